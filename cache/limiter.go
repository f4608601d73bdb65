package cache

import (
	"context"
	"time"
)

// Limiter paces work to a rate in bytes a second (background fill, scrub).
type Limiter struct {
	rate  int64
	start time.Time
	done  int64
}

// NewLimiter returns a Limiter for rate bytes a second (≤ 0: no pacing).
func NewLimiter(rate int64) *Limiter { return &Limiter{rate: rate, start: time.Now()} }

// Wait accounts n bytes done and returns when the rate allows more, or ctx's error.
func (l *Limiter) Wait(ctx context.Context, n int64) error {
	if l.rate <= 0 {
		return ctx.Err()
	}
	l.done += n
	due := l.start.Add(time.Duration(float64(l.done) / float64(l.rate) * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		sleep(ctx, d)
	}
	return ctx.Err()
}
