package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// fioJob is one fio read pattern.
type fioJob struct {
	Name   string // "seq 1 MiB", "rand 4 KiB", …
	RW     string // read or randread
	BS     string // 1m, 4k, 64k
	Direct bool
}

func (j fioJob) label() string {
	mode := "buffered"
	if j.Direct {
		mode = "O_DIRECT"
	}
	return j.Name + ", " + mode
}

// readJobs are the read scenario's patterns.
var readJobs = []fioJob{
	{"seq 1 MiB", "read", "1m", true},
	{"rand 4 KiB", "randread", "4k", true},
	{"rand 64 KiB", "randread", "64k", true},
	{"seq 1 MiB", "read", "1m", false},
	{"rand 4 KiB", "randread", "4k", false},
	{"rand 64 KiB", "randread", "64k", false},
}

// fio runs one time-based job (psync, one job, queue depth 1) reading path and returns its
// throughput in MB/s (10^6 bytes a second). fio is told not to drop the file's page cache
// (invalidate=0; with its default it drops it again at every pass over the file in a
// time-based run, which measures the disk, not a warm read); the random offsets are the same
// sequence for every file (randrepeat).
func fio(ctx context.Context, path string, j fioJob, runtime time.Duration) (mbs float64, ioBytes int64, err error) {
	direct := "0"
	if j.Direct {
		direct = "1"
	}
	secs := max(1, int(runtime.Round(time.Second)/time.Second))
	args := []string{
		"--name=bench", "--filename=" + strings.ReplaceAll(path, ":", `\:`), "--readonly",
		"--rw=" + j.RW, "--bs=" + j.BS, "--direct=" + direct, "--ioengine=psync", "--iodepth=1",
		"--numjobs=1", "--time_based", fmt.Sprintf("--runtime=%d", secs), "--invalidate=0",
		"--randrepeat=1", "--output-format=json",
	}
	out, err := command(ctx, "fio", args...)
	if err != nil {
		return 0, 0, err
	}
	return parseFio(out)
}

// parseFio returns the read bandwidth (MB/s) and the bytes read of fio's JSON output; fio
// may print warnings before the JSON document.
func parseFio(out []byte) (float64, int64, error) {
	i := bytes.IndexByte(out, '{')
	if i < 0 {
		return 0, 0, fmt.Errorf("fio: no JSON in its output: %q", tail(string(out), 300))
	}
	var doc struct {
		Jobs []struct {
			Error int `json:"error"`
			Read  struct {
				BWBytes float64 `json:"bw_bytes"`
				IOBytes int64   `json:"io_bytes"`
			} `json:"read"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal(out[i:], &doc); err != nil {
		return 0, 0, fmt.Errorf("fio: parsing its JSON: %w", err)
	}
	if len(doc.Jobs) != 1 {
		return 0, 0, fmt.Errorf("fio: %d jobs in its output, want 1", len(doc.Jobs))
	}
	j := doc.Jobs[0]
	if j.Error != 0 || j.Read.IOBytes == 0 || j.Read.BWBytes <= 0 {
		return 0, 0, fmt.Errorf("fio: job error %d, %d bytes read", j.Error, j.Read.IOBytes)
	}
	return j.Read.BWBytes / 1e6, j.Read.IOBytes, nil
}

// ddRead reads count MiB at skip MiB of path with dd (O_DIRECT when direct) and returns how
// long it took.
func ddRead(ctx context.Context, path string, skipMiB, countMiB int64, direct bool) (time.Duration, error) {
	args := []string{"if=" + path, "of=/dev/null", "bs=1M", fmt.Sprintf("skip=%d", skipMiB), "status=none"}
	if countMiB > 0 {
		args = append(args, fmt.Sprintf("count=%d", countMiB))
	}
	if direct {
		args = append(args, "iflag=direct")
	}
	t0 := time.Now()
	_, err := command(ctx, "dd", args...)
	return time.Since(t0), err
}
