package cache

import (
	"context"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/local"
)

// Persisting fetched chunks.
//
// A fetched chunk is served from memory as soon as it is verified and waits in pending until
// it is durable in the local state. Background workers make it durable in batches: a worker
// takes one queued chunk, then whatever else is queued at that moment (never waiting for
// more) up to batchChunks chunks or batchBytes bytes, writes them into one local.Batch
// (objects in tmp/, unsynced) and commits it: one syncfs before the objects get their names,
// one after, however many chunks — where a chunk alone costs an fsync of its object and one of
// its directory. Only when Commit has returned are the batch's chunks taken out of pending;
// a crash before loses them from the local state only, and they are fetched again.
//
// A batch forms on its own when chunks arrive faster than barriers complete (the workers are
// busy committing while the queue fills); a lone chunk is a batch of one. A reader that finds
// the queue full writes its chunk itself, alone, through local.Store.PutChunk (the cheaper
// barrier for one object), as does one racing Close.
//
// A chunk that cannot be written, or whose batch fails to commit, is counted (storeErrors),
// logged and dropped from pending: its bytes were served verified, and it is fetched again
// when next needed. A failed commit leaves none of its objects visible (local.Batch).

// persistConfig configures the persist workers.
type persistConfig struct {
	workers int // background writers
	queue   int // chunks waiting for them; beyond it the fetching reader writes its chunk itself
	// batchChunks and batchBytes bound a batch: it stops growing at either. A batchChunks of 1
	// writes every chunk alone through local.Store.PutChunk (the path before batches).
	batchChunks int
	batchBytes  int
	// newBatch starts a batch in the local state (tests wrap local.Batch to observe the order
	// of commits and pending and to fail them).
	newBatch func(*local.Store) (chunkBatch, error)
}

// chunkBatch is the part of local.Batch the persist workers use.
type chunkBatch interface {
	PutChunk(ctx context.Context, c *chunkstore.Chunk) (added bool, storedBytes int64, err error)
	Commit(ctx context.Context) ([]chunkstore.Digest, error)
	Abort()
}

var _ chunkBatch = (*local.Batch)(nil)

// defaultPersist is measured by BenchmarkPersistFetched: 32 chunks or 4 MiB bound what one
// barrier makes durable (and so what waits in memory behind it).
var defaultPersist = persistConfig{
	workers:     4,
	queue:       32,
	batchChunks: 32,
	batchBytes:  4 << 20,
	newBatch:    newLocalBatch,
}

func newLocalBatch(s *local.Store) (chunkBatch, error) {
	b, err := s.NewBatch()
	if err != nil {
		return nil, err // not a nil *local.Batch in an interface
	}
	return b, nil
}

func (c *Cache) startPersist(pc persistConfig) {
	c.persistCfg = pc
	c.writes = make(chan *chunkstore.Chunk, pc.queue)
	for range pc.workers {
		c.writers.Go(func() {
			for ch := range c.writes {
				if pc.batchChunks <= 1 {
					c.persistOne(ch)
					continue
				}
				c.persistBatch(c.gather(ch))
			}
		})
	}
}

// enqueueWrite hands a pending chunk to the background writers, or writes it now when they
// are behind or the cache is closing (a fill or read racing Close).
func (c *Cache) enqueueWrite(ch *chunkstore.Chunk) {
	c.wmu.RLock()
	if !c.closed.Load() {
		select {
		case c.writes <- ch:
			c.wmu.RUnlock()
			return
		default:
		}
	}
	c.wmu.RUnlock()
	c.inline.Add(1)
	c.persistOne(ch)
}

// Flush waits until the chunks fetched so far are durable in the local state.
func (c *Cache) Flush() { c.pending.Wait() }

// gather returns first and whatever else is queued now, up to the batch's bounds.
func (c *Cache) gather(first *chunkstore.Chunk) []*chunkstore.Chunk {
	batch := []*chunkstore.Chunk{first}
	n := len(first.Data())
	for len(batch) < c.persistCfg.batchChunks && n < c.persistCfg.batchBytes {
		select {
		case ch, ok := <-c.writes:
			if !ok {
				return batch // closed: the other workers see it too
			}
			batch = append(batch, ch)
			n += len(ch.Data())
		default:
			return batch
		}
	}
	return batch
}

// persistOne makes one chunk durable alone (an fsync of its object and of its directory).
func (c *Cache) persistOne(ch *chunkstore.Chunk) {
	if _, err := c.local.PutChunk(context.Background(), ch); err != nil {
		c.storeFailed(ch, err)
		return
	}
	c.stored(ch)
}

// persistBatch makes chs durable with one barrier; each leaves pending only after Commit.
func (c *Cache) persistBatch(chs []*chunkstore.Chunk) {
	ctx := context.Background()
	b, err := c.persistCfg.newBatch(c.local)
	if err != nil {
		for _, ch := range chs {
			c.storeFailed(ch, err)
		}
		return
	}
	written := make([]*chunkstore.Chunk, 0, len(chs))
	for _, ch := range chs {
		// Not added: the store has it already, or the batch does (queued twice by Admit).
		if _, _, err := b.PutChunk(ctx, ch); err != nil {
			c.storeFailed(ch, err)
			continue
		}
		written = append(written, ch)
	}
	if _, err := b.Commit(ctx); err != nil {
		for _, ch := range written {
			c.storeFailed(ch, err)
		}
		return
	}
	for _, ch := range written {
		c.stored(ch)
	}
}

// stored is told of a chunk now durable in the local state.
func (c *Cache) stored(ch *chunkstore.Chunk) {
	if len(ch.Data()) >= SubBlockSize && !c.noVerify.Load() {
		// Later partial reads verify by sub-block (a compressed object turns them off again).
		c.subs.add(ch.Digest(), subBlockDigests(ch.Data()))
	}
	c.pending.Delete(ch.Digest())
}

// storeFailed is told of a chunk that could not be made durable.
func (c *Cache) storeFailed(ch *chunkstore.Chunk, err error) {
	// The bytes were served verified; the chunk will be fetched again when next needed.
	c.stats.storeErrors.Add(1)
	c.log.Error("cannot store fetched chunk", "chunk", ch.Digest().String(), "err", err)
	c.pending.Delete(ch.Digest())
}
