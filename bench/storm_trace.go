package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"
)

// timedRead is one guest read of a boot trace: when (from the first read), where, how much.
type timedRead struct {
	At       time.Duration
	Off, Len int64
}

// readTimedTrace parses qemu's log-backend trace lines ("PID@SECONDS.MICROS:blk_co_preadv …
// offset N bytes M …", -msg timestamp=on) into reads with their times relative to the first.
func readTimedTrace(path string) ([]timedRead, error) {
	xs, ts, err := scanTrace(path)
	if err != nil {
		return nil, err
	}
	out := make([]timedRead, len(xs))
	for i, x := range xs {
		if math.IsNaN(ts[i]) {
			return nil, fmt.Errorf("trace %s: read %d has no time (want PID@SECONDS:event lines: qemu -msg timestamp=on)", path, i)
		}
		out[i] = timedRead{At: time.Duration((ts[i] - ts[0]) * float64(time.Second)), Off: x.Off, Len: x.Len}
	}
	return out, nil
}

// replay reads file as the trace did, each read no sooner than its time after start; it
// returns how long the whole trace took and the reads that failed.
func replay(ctx context.Context, file string, reads []timedRead) (time.Duration, int, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var maxLen int64
	for _, r := range reads {
		maxLen = max(maxLen, r.Len)
	}
	buf := make([]byte, maxLen)
	start := time.Now()
	failed := 0
	var first error
	for _, r := range reads {
		if wait := time.Until(start.Add(r.At)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return time.Since(start), failed, ctx.Err()
			case <-t.C:
			}
		}
		if _, err := f.ReadAt(buf[:r.Len], r.Off); err != nil && !errors.Is(err, io.EOF) {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	return time.Since(start), failed, first
}
