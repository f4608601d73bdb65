package cache

import (
	"context"
	"fmt"
	"sync"

	"github.com/basefs/basefs/chunkstore"
)

// The few things of the cache its manager uses, as methods: the manager never takes the
// cache's lock or reads its maps itself.

// foreground tracks the chunks guest reads wait on; background work yields to them — on a
// condition, not a poll. Fill waits until there are none; the boot profile's prefetch waits
// until every one is a chunk it is fetching itself (the guest caught up with it).
type foreground struct {
	mu   sync.Mutex
	idle sync.Cond // broadcast whenever a wait ends
	n    int
	by   map[chunkstore.Digest]int // waits by chunk; the zero digest: a fetch of no one chunk

	waiters int // background work blocked in waitOnly
}

// enter and leave bracket a foreground fetch that is not of one chunk (a provisional image's
// range); enterChunk and leaveChunk a guest read's wait on chunk d.
func (f *foreground) enter() { f.enterChunk(chunkstore.Digest{}) }
func (f *foreground) leave() { f.leaveChunk(chunkstore.Digest{}) }

func (f *foreground) enterChunk(d chunkstore.Digest) {
	f.mu.Lock()
	if f.by == nil {
		f.by = make(map[chunkstore.Digest]int)
		f.idle.L = &f.mu
	}
	f.n++
	f.by[d]++
	f.mu.Unlock()
}

func (f *foreground) leaveChunk(d chunkstore.Digest) {
	f.mu.Lock()
	f.n--
	if f.by[d]--; f.by[d] == 0 {
		delete(f.by, d)
	}
	if f.waiters > 0 { // guest reads run through here: wake background work only if it waits
		f.idle.Broadcast()
	}
	f.mu.Unlock()
}

// waitIdle returns when no foreground fetch is in flight.
func (f *foreground) waitIdle() { f.waitOnly(func(chunkstore.Digest) bool { return false }) }

// waitOnly returns when every foreground wait is on a chunk ours reports true for. ours is
// called with f's lock held (lock order: foreground, then whatever ours takes) and must not
// block.
func (f *foreground) waitOnly(ours func(chunkstore.Digest) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.by == nil {
		return // nothing ever waited
	}
	for f.othersWaitingLocked(ours) {
		f.waiters++
		f.idle.Wait()
		f.waiters--
	}
}

func (f *foreground) othersWaitingLocked(ours func(chunkstore.Digest) bool) bool {
	for d := range f.by {
		if d.IsZero() || !ours(d) {
			return true
		}
	}
	return false
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

// waitForegroundOnly returns when every chunk a guest read waits on is one ours reports true
// for (ours is called with the foreground tracker's lock held and must not block).
func (c *Cache) waitForegroundOnly(ours func(chunkstore.Digest) bool) { c.fg.waitOnly(ours) }

// haveLocal reports whether chunk d is in the local state or fetched and being written.
func (c *Cache) haveLocal(ctx context.Context, d chunkstore.Digest) bool {
	if c.isPending(d) {
		return true
	}
	ok, _ := c.local.HasChunk(ctx, d)
	return ok
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
