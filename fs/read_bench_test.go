package fs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/basefs/basefs/chunkstore/testenv"
)

// BenchmarkReadVsLoopback reads a fully cached, data-dense image through the mount from a
// subprocess (dd, fio), against go-fuse's loopback file system without passthrough serving the
// same bytes from a plain file — the cost of FUSE alone — in the same run. It reports
// throughputs and the ratio basefs/loopback. BASEFS_BENCH_MIB sets the image size (2048).
func BenchmarkReadVsLoopback(b *testing.B) {
	testenv.NeedBinary(b, "dd", "fio")
	mib := int64(2048)
	if s := os.Getenv("BASEFS_BENCH_MIB"); s != "" {
		mib, _ = strconv.ParseInt(s, 10, 64)
	}
	size := mib << 20
	e := newEnv(b, envOptions{memoryBytes: 256 << 20})
	d, raw := e.importImage(size, 42, [2]int64{0, size})
	img := e.path(d.String())
	// Fully cached: every chunk in the local state.
	if out, err := exec.Command("dd", "if="+img, "of=/dev/null", "bs=1M").CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	// The loopback over the plain file, page-cached.
	lmnt := filepath.Join(b.TempDir(), "loop")
	os.Mkdir(lmnt, 0o755)
	lroot, err := gofs.NewLoopbackRoot(filepath.Dir(raw))
	if err != nil {
		b.Fatal(err)
	}
	mo := MountOptions(false)
	mo.Options = []string{"ro"}
	srv, err := gofs.Mount(lmnt, lroot, &gofs.Options{MountOptions: *mo})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Unmount()
	loop := filepath.Join(lmnt, filepath.Base(raw))
	exec.Command("dd", "if="+raw, "of=/dev/null", "bs=1M").Run()

	seq := func(path string) float64 {
		// O_DIRECT: every byte is served by the FUSE daemon, not the page cache.
		start := time.Now()
		if out, err := exec.Command("dd", "if="+path, "of=/dev/null", "bs=1M", "iflag=direct").CombinedOutput(); err != nil {
			b.Fatalf("dd %s: %v\n%s", path, err, out)
		}
		return float64(size) / time.Since(start).Seconds() / 1e6
	}
	rnd := func(path string) float64 {
		out, err := exec.Command("fio", "--name=r", "--filename="+path, "--readonly", "--rw=randread", "--bs=64k",
			"--direct=1", "--ioengine=psync", "--runtime=5", "--time_based", "--numjobs=1", "--output-format=terse",
			"--terse-version=3").CombinedOutput()
		if err != nil {
			b.Fatalf("fio %s: %v\n%s", path, err, out)
		}
		// terse v3: field 7 is read bandwidth in KiB/s.
		f := strings.Split(strings.TrimSpace(lastLineOf(string(out))), ";")
		kib, _ := strconv.ParseFloat(f[6], 64)
		return kib * 1024 / 1e6
	}
	b.ResetTimer()
	var sb, sl, rb, rl float64
	for range b.N {
		sl += seq(loop)
		sb += seq(img)
		rl += rnd(loop)
		rb += rnd(img)
	}
	n := float64(b.N)
	b.ReportMetric(sb/n, "seq-basefs-MB/s")
	b.ReportMetric(sl/n, "seq-loopback-MB/s")
	b.ReportMetric(sb/sl, "seq-ratio")
	b.ReportMetric(rb/n, "rand64k-basefs-MB/s")
	b.ReportMetric(rl/n, "rand64k-loopback-MB/s")
	b.ReportMetric(rb/rl, "rand64k-ratio")
}

func lastLineOf(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

// BenchmarkReadInProcess calls the file system's Read directly (no kernel, no FUSE) on a fully
// cached image, from start to end and again, 4 KiB and 1 MiB at a time: the dispatch and the
// cache's per-read cost alone, with its allocations (the hot path must not grow any).
func BenchmarkReadInProcess(b *testing.B) {
	const size = 64 << 20
	e := newEnv(b, envOptions{memoryBytes: 256 << 20})
	d, _ := e.importImage(size, 43, [2]int64{0, size})
	if _, err := os.ReadFile(e.path(d.String())); err != nil { // every chunk local
		b.Fatal(err)
	}
	f, err := New(Config{Images: e.cache})
	if err != nil {
		b.Fatal(err)
	}
	var out fuse.EntryOut
	if st := f.Lookup(nil, &fuse.InHeader{NodeId: fuse.FUSE_ROOT_ID}, d.String(), &out); !st.Ok() {
		b.Fatalf("lookup: %v", st)
	}
	for _, c := range []struct {
		name string
		n    int
	}{{"4KiB", 4 << 10}, {"1MiB", 1 << 20}} {
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, c.n)
			in := fuse.ReadIn{InHeader: fuse.InHeader{NodeId: out.NodeId}, Size: uint32(c.n)}
			b.SetBytes(int64(c.n))
			b.ReportAllocs()
			for i := range b.N {
				in.Offset = uint64(i%(size/c.n)) * uint64(c.n)
				r, st := f.Read(nil, &in, buf)
				if !st.Ok() || r.Size() != c.n {
					b.Fatalf("read at %d: %v, %d bytes", in.Offset, st, r.Size())
				}
				r.Done()
			}
		})
	}
}
