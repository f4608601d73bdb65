package fs

import "time"

// track counts a request in flight until the returned func is called, which also records its
// latency (Config.ObserveRequest).
func (f *FS) track(op string) func() {
	start := time.Now()
	f.inflight.Add(1)
	return func() {
		if f.inflight.Add(-1) == 0 && f.draining.Load() {
			f.wakeIdle()
		}
		if f.cfg.ObserveRequest != nil {
			f.cfg.ObserveRequest(op, time.Since(start))
		}
	}
}

// Idle returns a channel closed once no request is in flight (a serving process about to
// hand over waits on it). From the first call on, each moment of idleness is signalled.
func (f *FS) Idle() <-chan struct{} {
	f.idleMu.Lock()
	defer f.idleMu.Unlock()
	f.draining.Store(true)
	ch := make(chan struct{})
	if f.inflight.Load() == 0 {
		close(ch)
		return ch
	}
	f.idle = append(f.idle, ch)
	return ch
}

func (f *FS) wakeIdle() {
	f.idleMu.Lock()
	defer f.idleMu.Unlock()
	if f.inflight.Load() != 0 {
		return
	}
	for _, ch := range f.idle {
		close(ch)
	}
	f.idle = nil
}
