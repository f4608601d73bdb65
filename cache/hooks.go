package cache

import (
	"context"
	"fmt"
	"sync"

	"github.com/basefs/basefs/chunkstore"
)

// The few things of the cache its manager uses, as methods: the manager never takes the
// cache's lock or reads its maps itself.

// foreground counts the fetches guest reads wait on; background work (fill) waits until
// there are none — on a condition, not a poll.
type foreground struct {
	mu   sync.Mutex
	idle sync.Cond
	n    int
}

func (f *foreground) enter() {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
}

func (f *foreground) leave() {
	f.mu.Lock()
	if f.n--; f.n == 0 && f.idle.L != nil {
		f.idle.Broadcast()
	}
	f.mu.Unlock()
}

// waitIdle returns when no foreground fetch is in flight.
func (f *foreground) waitIdle() {
	f.mu.Lock()
	if f.idle.L == nil {
		f.idle.L = &f.mu
	}
	for f.n > 0 {
		f.idle.Wait()
	}
	f.mu.Unlock()
}

// signal wakes every waiter at each broadcast (a channel closed and replaced).
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed at the next broadcast.
func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) broadcast() {
	s.mu.Lock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
	s.mu.Unlock()
}

// openImages returns the images with an open file handle (they are in use).
func (c *Cache) openImages() []chunkstore.Digest {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []chunkstore.Digest
	for d, im := range c.images {
		if im.Open() {
			out = append(out, d)
		}
	}
	return out
}

// loaded returns image d if this process has it in memory.
func (c *Cache) loaded(d chunkstore.Digest) *Image {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.images[d]
}

// isPending reports whether chunk d was fetched and is not durable yet (scrub and fill skip it).
func (c *Cache) isPending(d chunkstore.Digest) bool {
	_, ok := c.pending.Load(d)
	return ok
}

// repair moves a local chunk that failed verification aside and fetches it again.
func (c *Cache) repair(ctx context.Context, d chunkstore.Digest, cause error) error {
	if err := c.quarantine(d, cause); err != nil {
		return err
	}
	if _, err := c.Chunk(ctx, d); err != nil {
		return err
	}
	c.stats.repairs.Add(1)
	return nil
}

// forgetLazy drops image d from memory if it is read through a ChunkSource (it has no
// manifest: only its name and chunks) and returns the chunks its source has seen (so their
// local copies can go too).
func (c *Cache) forgetLazy(d chunkstore.Digest) []chunkstore.Digest {
	c.mu.Lock()
	im := c.images[d]
	if im != nil && im.src != nil {
		delete(c.images, d)
	}
	c.mu.Unlock()
	if im == nil || im.src == nil {
		return nil
	}
	im.src.Removed()
	known, _ := im.src.Known()
	return known
}

// Origins returns the origins, in the order they are asked.
func (c *Cache) Origins() []chunkstore.Getter { return c.origins }

// Names is the table of names other than digests that images are known by, kept by the layer
// above the cache (package cache/glanceimg keeps nova's).
type Names interface {
	// Record names image d name (an adopted download).
	Record(name string, d chunkstore.Digest) error
	// Forget removes name and every other name of image d (it was removed).
	Forget(d chunkstore.Digest, name string) error
}

// noNames is the table of a cache configured without one.
type noNames struct{}

func (noNames) Record(name string, _ chunkstore.Digest) error {
	return fmt.Errorf("cannot record the name %q: this cache keeps no name table", name)
}

func (noNames) Forget(chunkstore.Digest, string) error { return nil }
