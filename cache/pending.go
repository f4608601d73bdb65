package cache

import (
	"sync"
	"time"
)

// pendingSet is a set of work in flight (chunks not yet durable, write-back items queued)
// that can be waited on until it is empty: a signal, not a poll.
type pendingSet[K comparable, V any] struct {
	mu   sync.Mutex
	gone sync.Cond // broadcast whenever an element leaves
	m    map[K]V
}

func (p *pendingSet[K, V]) init() {
	if p.m == nil {
		p.m = make(map[K]V)
		p.gone.L = &p.mu
	}
}

// Store adds or replaces k.
func (p *pendingSet[K, V]) Store(k K, v V) {
	p.mu.Lock()
	p.init()
	p.m[k] = v
	p.mu.Unlock()
}

// LoadOrStore adds k unless present; it reports whether k was present (and its value).
func (p *pendingSet[K, V]) LoadOrStore(k K, v V) (V, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	if old, ok := p.m[k]; ok {
		return old, true
	}
	p.m[k] = v
	return v, false
}

// Load returns k's value, if present.
func (p *pendingSet[K, V]) Load(k K) (V, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.m[k]
	return v, ok
}

// Delete removes k and wakes the waiters.
func (p *pendingSet[K, V]) Delete(k K) {
	p.mu.Lock()
	p.init()
	if _, ok := p.m[k]; ok {
		delete(p.m, k)
		p.gone.Broadcast()
	}
	p.mu.Unlock()
}

// Wait returns when the set is empty.
func (p *pendingSet[K, V]) Wait() {
	p.mu.Lock()
	p.init()
	for len(p.m) > 0 {
		p.gone.Wait()
	}
	p.mu.Unlock()
}

// WaitGone returns when k is not in the set, or at deadline (false).
func (p *pendingSet[K, V]) WaitGone(k K, deadline time.Time) bool {
	t := time.AfterFunc(time.Until(deadline), func() {
		p.mu.Lock()
		p.gone.Broadcast()
		p.mu.Unlock()
	})
	defer t.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.init()
	for {
		if _, ok := p.m[k]; !ok {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		p.gone.Wait()
	}
}
