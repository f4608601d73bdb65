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

// replayed is one host's replay: how long the whole trace took, how long its reads took in
// all (the time the guest would have waited on its disk), the reads that failed.
type replayed struct {
	Took, InReads time.Duration
	Failed        int
}

// replay reads file as the trace did, each read no sooner than its time after start.
func replay(ctx context.Context, file string, reads []timedRead) (replayed, error) {
	var rp replayed
	f, err := os.Open(file)
	if err != nil {
		return rp, err
	}
	defer f.Close()
	var maxLen int64
	for _, r := range reads {
		maxLen = max(maxLen, r.Len)
	}
	buf := make([]byte, maxLen)
	start := time.Now()
	var first error
	for _, r := range reads {
		if wait := time.Until(start.Add(r.At)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				rp.Took = time.Since(start)
				return rp, ctx.Err()
			case <-t.C:
			}
		}
		t0 := time.Now()
		_, err := f.ReadAt(buf[:r.Len], r.Off)
		rp.InReads += time.Since(t0)
		if err != nil && !errors.Is(err, io.EOF) {
			rp.Failed++
			if first == nil {
				first = err
			}
		}
	}
	rp.Took = time.Since(start)
	return rp, first
}
