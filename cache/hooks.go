package cache

import (
	"context"
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

// forgetLazy drops image d from memory if it is a lazily read Glance image, and the lazy
// state of any Glance image that was, or completed as, d; it returns the chunks of d's lazy
// state that are known (so their local copies can go too).
func (c *Cache) forgetLazy(d chunkstore.Digest) []chunkstore.Digest {
	c.mu.Lock()
	im := c.images[d]
	if im != nil && im.prov != nil {
		delete(c.images, d) // no manifest: only its name and chunks
	}
	for id, p := range c.prov {
		if p.digest == d || p.prov.finalDigest() == d {
			delete(c.prov, id)
		}
	}
	c.mu.Unlock()
	if im == nil || im.prov == nil {
		return nil
	}
	var chunks []chunkstore.Digest
	im.prov.mu.Lock()
	for i, st := range im.prov.state {
		if st == chunkKnown {
			chunks = append(chunks, im.prov.digests[i])
		}
	}
	im.prov.mu.Unlock()
	return chunks
}

// waitForeground returns when no fetch a guest read waits on is in flight.
func (c *Cache) waitForeground() { c.fg.waitIdle() }

// Origins returns the origins, in the order they are asked.
func (c *Cache) Origins() []chunkstore.Getter { return c.origins }
