package cache

import (
	"context"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/tier"
)

// A ChunkSource serves an image that has no manifest yet: its size is known, its chunks' digests
// only as they arrive (a raw Glance image read lazily by range, package cache/glanceimg). The
// cache reads such an image through its ChunkSource; the chunks it produces come back to
// the cache through Admit. Its Image is known under a key of the source's choosing that is
// never a manifest's digest.
type ChunkSource interface {
	// Chunk returns chunk i's bytes for a waiting reader (nil: all zeros), fetching it — with
	// the chunks after it up to chunk span-1 when those are unknown — if it is not known.
	Chunk(ctx context.Context, i, span int) ([]byte, error)
	// Known returns the digests of the non-zero chunks seen so far and how many chunks are
	// still unknown.
	Known() (digests []chunkstore.Digest, unknown int)
	// Fill fetches every chunk not seen yet, at most rate bytes a second, yielding to waiting
	// readers; progress is told of each range fetched.
	Fill(ctx context.Context, rate int64, progress func(bytes int64, chunks int))
	// Done is closed when the source has finished (Result is then final).
	Done() <-chan struct{}
	// Result returns the digest of the image's manifest once it has one, and the error that
	// made the source give up, if any.
	Result() (chunkstore.Digest, error)
	// UsePath is the file whose mtime is the image's recorded use.
	UsePath() string
	// Removed tells the source its image was removed from the cache.
	Removed()
}

// AddSource makes an image of size bytes in chunks of chunkSize, made from from, read through
// src and known as key; if key is known already, that image is returned (and src unused).
func (c *Cache) AddSource(key chunkstore.Digest, size, chunkSize int64, from chunkstore.Source, src ChunkSource) *Image {
	im := &Image{c: c, digest: key, m: &chunkstore.Manifest{Size: size, ChunkSize: chunkSize, Source: from}, src: src}
	im.noteUse()
	c.mu.Lock()
	if old := c.images[key]; old != nil {
		im = old
	} else {
		c.images[key] = im
	}
	c.mu.Unlock()
	return im
}

// Admit takes a verified chunk a ChunkSource got from origin: kept in memory, queued for the local
// state unless it is there, and offered to the write-back tier if origin is behind it.
func (c *Cache) Admit(ch *chunkstore.Chunk, origin chunkstore.Getter) {
	c.mem.add(ch.Digest(), ch)
	c.wb.offerChunk(c.originIndex(origin), ch) // never blocks; asked even if the chunk is local
	if ok, _ := c.local.HasChunk(context.Background(), ch.Digest()); ok {
		return
	}
	c.pending.Store(ch.Digest(), ch)
	c.enqueueWrite(ch)
}

// originIndex returns o's index among the origins (-1: not one).
func (c *Cache) originIndex(o chunkstore.Getter) int {
	for i, x := range c.origins {
		if x == o {
			return i
		}
	}
	return -1
}

// OriginCounters returns origin o's counters (nil if o is not one of the cache's origins).
func (c *Cache) OriginCounters(o chunkstore.Getter) *tier.Counters {
	if i := c.originIndex(o); i >= 0 {
		return c.tiers.Counters(i)
	}
	return nil
}

// Foreground marks a fetch a reader waits on until the returned func is called: background
// work (fill, prefetch) waits while one is in flight.
func (c *Cache) Foreground() (leave func()) {
	c.fg.enter()
	return c.fg.leave
}

// WaitForeground returns when no fetch a reader waits on is in flight.
func (c *Cache) WaitForeground() { c.fg.waitIdle() }

// StartFetch counts a fetch a ChunkSource makes from an origin; done(err) ends it (its latency is
// recorded when err is nil).
func (c *Cache) StartFetch() (done func(error)) {
	start := time.Now()
	c.stats.inFlight.Add(1)
	return func(err error) {
		c.stats.inFlight.Add(-1)
		if err == nil {
			c.stats.observeFetch(time.Since(start))
		}
	}
}

// Lazy reports whether the image is read through a ChunkSource that has not given it a digest
// of its own yet (its Digest is then the Source's key).
func (im *Image) Lazy() bool {
	if im.src == nil {
		return false
	}
	d, _ := im.src.Result()
	return d.IsZero()
}

// Complete waits until the image's ChunkSource finished (for tests and tools): the digest it got,
// or the error that made it give up. An image with a manifest is complete.
func (im *Image) Complete(ctx context.Context) (chunkstore.Digest, error) {
	if im.src == nil {
		return im.digest, nil
	}
	select {
	case <-im.src.Done():
	case <-ctx.Done():
		return chunkstore.Digest{}, ctx.Err()
	}
	return im.src.Result()
}
