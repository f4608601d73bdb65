package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore/testenv"
)

func TestFioArgs(t *testing.T) {
	for _, tc := range []struct {
		job  fioJob
		want []string // among the arguments
	}{
		{fioJob{"seq 1 MiB", "read", "1m", true, 1}, []string{"--rw=read", "--bs=1m", "--direct=1", "--ioengine=psync", "--iodepth=1"}},
		{fioJob{"rand 4 KiB", "randread", "4k", false, 1}, []string{"--rw=randread", "--bs=4k", "--direct=0", "--ioengine=psync", "--iodepth=1"}},
		{fioJob{"rand 4 KiB", "randread", "4k", true, 16}, []string{"--rw=randread", "--bs=4k", "--direct=1", "--ioengine=libaio", "--iodepth=16"}},
	} {
		args, err := fioArgs("/a:b", tc.job, 2500*time.Millisecond)
		if err != nil {
			t.Fatalf("%s: %v", tc.job.label(), err)
		}
		for _, w := range append(tc.want, `--filename=/a\:b`, "--runtime=3", "--invalidate=0", "--readonly", "--time_based") {
			if !slices.Contains(args, w) {
				t.Errorf("%s: %v lacks %s", tc.job.label(), args, w)
			}
		}
	}
	for _, bad := range []fioJob{{"rand 4 KiB", "randread", "4k", false, 16}, {"seq", "read", "1m", true, 0}} {
		if _, err := fioArgs("/f", bad, time.Second); err == nil {
			t.Errorf("fioArgs(%+v): no error", bad)
		}
	}
	if got := (fioJob{"rand 64 KiB", "randread", "64k", true, 16}).label(); got != "rand 64 KiB QD16, O_DIRECT" {
		t.Errorf("label = %q", got)
	}
	if got := (fioJob{"seq 1 MiB", "read", "1m", false, 1}).label(); got != "seq 1 MiB, buffered" {
		t.Errorf("label = %q", got)
	}
}

// TestFioJobs runs every read pattern with the real fio on a plain file and checks that fio
// ran the job asked for (its own account of its options) and, at QD16, really kept 16 reads
// in flight.
func TestFioJobs(t *testing.T) {
	testenv.NeedBinary(t, "fio")
	path := filepath.Join(t.TempDir(), "data")
	if err := writeImage(path, 8*MiB, 7, []extent{{0, 8 * MiB}}); err != nil {
		t.Fatal(err)
	}
	if f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0); errors.Is(err, syscall.EINVAL) {
		testenv.Skip(t, "the temporary directory's file system refuses O_DIRECT")
	} else if err != nil {
		t.Fatal(err)
	} else {
		f.Close()
	}
	for _, j := range readJobs {
		args, err := fioArgs(path, j, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		out, err := command(context.Background(), "fio", args...)
		if err != nil {
			t.Fatalf("%s: %v", j.label(), err)
		}
		doc, err := decodeFio(out)
		if err != nil {
			t.Fatalf("%s: %v", j.label(), err)
		}
		job := doc.Jobs[0]
		direct := map[bool]string{true: "1", false: "0"}[j.Direct]
		for k, want := range map[string]string{"rw": j.RW, "bs": j.BS, "direct": direct, "ioengine": j.engine(), "iodepth": strconv.Itoa(j.Depth)} {
			if job.Options[k] != want {
				t.Errorf("%s: fio ran %s=%q, want %q", j.label(), k, job.Options[k], want)
			}
		}
		if res, _ := parseFio(out); res.IOs <= 0 || res.Bytes <= 0 {
			t.Errorf("%s: %+v: nothing read", j.label(), res)
		}
		if j.Depth == 16 && job.IODepth["16"] < 50 {
			t.Errorf("%s: fio kept 16 reads in flight %.0f%% of the time, want most: %v", j.label(), job.IODepth["16"], job.IODepth)
		}
	}
}
