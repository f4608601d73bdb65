package importer

import (
	"context"
	"time"

	"github.com/basefs/basefs/chunkstore/local"
)

// Limits bound what an import may cost. A zero field is no bound of that kind.
type Limits struct {
	// MaxSize is the largest virtual size accepted (besides basefs's own 1 PiB).
	MaxSize int64
	// MinFree is the free space kept on the state filesystem (nova's ephemeral files share
	// it): checked before an import and watched while it converts and chunks.
	MinFree int64
	// ConvertTimeout bounds one qemu-img convert.
	ConvertTimeout time.Duration
}

// DefaultLimits are the flags' defaults: Glance's own image_size_cap (1 TiB), a 1 GiB
// reserve, an hour per conversion.
var DefaultLimits = Limits{MaxSize: 1 << 40, MinFree: 1 << 30, ConvertTimeout: time.Hour}

// ErrNoSpace is wrapped when an import would take the state filesystem below its reserve.
var ErrNoSpace = local.ErrNoSpace

// CheckFree is local.CheckFree.
func CheckFree(dir string, need, minFree int64) error { return local.CheckFree(dir, need, minFree) }

// guardInterval is how often a running import looks at the free space: at disk speed
// (~1 GB/s here) it can overshoot the reserve by about this many milliseconds of writing.
const guardInterval = 20 * time.Millisecond

// guard cancels ctx's work with ErrNoSpace as soon as dir's filesystem falls below minFree;
// stop ends the watch. With no reserve it does nothing.
func guard(ctx context.Context, dir string, minFree int64) (context.Context, func()) {
	if minFree <= 0 {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(guardInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if err := CheckFree(dir, 0, minFree); err != nil {
					cancel(err)
					return
				}
			}
		}
	}()
	return ctx, func() { close(done); cancel(nil) }
}
