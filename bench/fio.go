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
	// Depth is the queue depth: 1 is synchronous reads (psync), more is that many reads in
	// flight at once (libaio, as qemu with aio=native issues them; O_DIRECT only).
	Depth int
}

// short is the pattern's name with its queue depth when it is more than one: "rand 4 KiB",
// "rand 4 KiB QD16".
func (j fioJob) short() string {
	if j.Depth > 1 {
		return fmt.Sprintf("%s QD%d", j.Name, j.Depth)
	}
	return j.Name
}

func (j fioJob) label() string {
	mode := "buffered"
	if j.Direct {
		mode = "O_DIRECT"
	}
	return j.short() + ", " + mode
}

// engine is the fio I/O engine that gives the job its queue depth.
func (j fioJob) engine() string {
	if j.Depth > 1 {
		return "libaio"
	}
	return "psync"
}

// readJobs are the read scenario's patterns.
var readJobs = []fioJob{
	{"seq 1 MiB", "read", "1m", true, 1},
	{"rand 4 KiB", "randread", "4k", true, 1},
	{"rand 64 KiB", "randread", "64k", true, 1},
	{"rand 4 KiB", "randread", "4k", true, 16},
	{"rand 64 KiB", "randread", "64k", true, 16},
	{"seq 1 MiB", "read", "1m", false, 1},
	{"rand 4 KiB", "randread", "4k", false, 1},
	{"rand 64 KiB", "randread", "64k", false, 1},
}

// fioResult is what one fio job measured.
type fioResult struct {
	MBs   float64 // read throughput, 10^6 bytes a second
	Bytes int64   // bytes read
	IOs   int64   // reads issued (with O_DIRECT each is one FUSE request of at most max_read)
}

// fioArgs is the command line of one time-based job (one process) reading path. fio is told
// not to drop the file's page cache (invalidate=0; with its default it drops it again at
// every pass over the file in a time-based run, which measures the disk, not a warm read);
// the random offsets are the same sequence for every file (randrepeat).
func fioArgs(path string, j fioJob, runtime time.Duration) ([]string, error) {
	if j.Depth < 1 || (j.Depth > 1 && !j.Direct) {
		// Buffered libaio reads are synchronous in the kernel: the depth would be a lie.
		return nil, fmt.Errorf("fio job %s: queue depth %d needs O_DIRECT (and at least 1)", j.label(), j.Depth)
	}
	direct := "0"
	if j.Direct {
		direct = "1"
	}
	secs := max(1, int(runtime.Round(time.Second)/time.Second))
	return []string{
		"--name=bench", "--filename=" + strings.ReplaceAll(path, ":", `\:`), "--readonly",
		"--rw=" + j.RW, "--bs=" + j.BS, "--direct=" + direct, "--ioengine=" + j.engine(),
		fmt.Sprintf("--iodepth=%d", j.Depth), "--numjobs=1", "--time_based", fmt.Sprintf("--runtime=%d", secs),
		"--invalidate=0", "--randrepeat=1", "--output-format=json",
	}, nil
}

// fio runs one job reading path (fioArgs) and returns what it measured.
func fio(ctx context.Context, path string, j fioJob, runtime time.Duration) (fioResult, error) {
	args, err := fioArgs(path, j, runtime)
	if err != nil {
		return fioResult{}, err
	}
	out, err := command(ctx, "fio", args...)
	if err != nil {
		return fioResult{}, err
	}
	return parseFio(out)
}

// fioDoc is the part of fio's JSON output the benchmarks read.
type fioDoc struct {
	Jobs []struct {
		Error   int               `json:"error"`
		Options map[string]string `json:"job options"`
		Read    struct {
			BWBytes  float64 `json:"bw_bytes"`
			IOBytes  int64   `json:"io_bytes"`
			TotalIOs int64   `json:"total_ios"`
		} `json:"read"`
		// IODepth is the share (percent) of the run spent at each queue depth ("1", "2",
		// "4", "8", "16", "32", ">=64").
		IODepth map[string]float64 `json:"iodepth_level"`
	} `json:"jobs"`
}

// decodeFio decodes fio's JSON output, which may follow warnings, and checks that it holds
// one job that read something without error.
func decodeFio(out []byte) (*fioDoc, error) {
	i := bytes.IndexByte(out, '{')
	if i < 0 {
		return nil, fmt.Errorf("fio: no JSON in its output: %q", tail(string(out), 300))
	}
	var doc fioDoc
	if err := json.Unmarshal(out[i:], &doc); err != nil {
		return nil, fmt.Errorf("fio: parsing its JSON: %w", err)
	}
	if len(doc.Jobs) != 1 {
		return nil, fmt.Errorf("fio: %d jobs in its output, want 1", len(doc.Jobs))
	}
	j := doc.Jobs[0]
	if j.Error != 0 || j.Read.IOBytes == 0 || j.Read.BWBytes <= 0 {
		return nil, fmt.Errorf("fio: job error %d, %d bytes read", j.Error, j.Read.IOBytes)
	}
	return &doc, nil
}

// parseFio returns the read throughput, bytes and reads of fio's JSON output.
func parseFio(out []byte) (fioResult, error) {
	doc, err := decodeFio(out)
	if err != nil {
		return fioResult{}, err
	}
	r := doc.Jobs[0].Read
	return fioResult{MBs: r.BWBytes / 1e6, Bytes: r.IOBytes, IOs: r.TotalIOs}, nil
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
