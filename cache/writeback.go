package cache

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/basefs/basefs/cache/report"
	"github.com/basefs/basefs/chunkstore"
)

// Write-back (Config.WriteBack): a chunk or manifest this host fetched from an origin behind
// the first shared tier (an s3:// origin earlier in Config.Origins) is also written to that
// tier, so the next host finds it there instead of asking Glance or another slow origin.
//
//   - Asynchronous: the read that fetched the chunk never waits for the write. Writes go
//     through a bounded queue to a few workers; when the queue is full the write is dropped
//     (counted): the tier is a cache, and the chunk is written back by a later host.
//   - Put-if-absent: the tier's PutChunk never replaces an object, so racing hosts write each
//     chunk once between them and nothing can replace good bytes with other bytes.
//   - Only verified objects are written: the chunks and manifests the cache got from origins
//     are verified before fetchChunk/fetchManifest return them.
//   - Nothing is written back for chunks that came from the tier itself or from origins in
//     front of it.
//
// A manifest is written back when fetched, before all its chunks are in the tier: a reader of
// a write-back tier must keep the origins behind it (the chunks it lacks are then fetched from
// them, and written back in turn). A tier that must hold whole images is filled with
// `basefs publish --to s3://…`, which writes a manifest only after its chunks.
//
// Images read through a ChunkSource (a raw Glance image, cache/glanceimg): each chunk is
// offered as it arrives (Admit; it is named by its own SHA-256, so it is safe in the tier
// before the source's whole-image check; other hosts reach it only through a manifest). When
// the image completes, WriteBackImage writes, in order, every chunk the tier lacks (HEAD, then
// PUT from the local state), the manifest, and then what the layer above adds (an index
// entry): that is written only after a manifest whose chunks are all in the tier.
type writeBack struct {
	dst chunkstore.Store // the shared tier
	idx int              // its index in Cache.origins
	log *slog.Logger

	mu     sync.RWMutex // guards closed against sends on a closed q (a late fetch after Close)
	closed bool
	q      chan wbItem
	wg     sync.WaitGroup
	queued pendingSet[wbKey, bool] // while waiting or being written: one fetch queues one write

	chunks, manifests, present, failed, dropped atomic.Int64
	bytes                                       atomic.Int64
	entries                                     atomic.Int64
}

type wbKey struct {
	d        chunkstore.Digest
	manifest bool
}

type wbItem struct {
	chunk    *chunkstore.Chunk
	manifest *chunkstore.Manifest
	digest   chunkstore.Digest
}

const (
	writeBackWorkers = 4
	writeBackQueue   = 1024
	writeBackTimeout = time.Minute
)

func newWriteBack(dst chunkstore.Store, idx int, log *slog.Logger) *writeBack {
	w := &writeBack{dst: dst, idx: idx, log: log, q: make(chan wbItem, writeBackQueue)}
	for range writeBackWorkers {
		w.wg.Go(func() {
			for it := range w.q {
				w.write(it)
			}
		})
	}
	return w
}

// firstSharedTier returns the index of the first origin that is a shared tier, or -1.
func firstSharedTier(origins []chunkstore.Getter) int {
	for i, o := range origins {
		if _, ok := o.(chunkstore.SharedTier); ok {
			return i
		}
	}
	return -1
}

// offerChunk queues ch for the tier if it came from origin i behind it. It never blocks.
func (w *writeBack) offerChunk(i int, ch *chunkstore.Chunk) {
	if w == nil || i <= w.idx {
		return
	}
	w.offer(wbItem{chunk: ch, digest: ch.Digest()})
}

// offerManifest queues m (named d) for the tier if it came from origin i behind it.
func (w *writeBack) offerManifest(i int, d chunkstore.Digest, m *chunkstore.Manifest) {
	if w == nil || i <= w.idx {
		return
	}
	w.offer(wbItem{manifest: m, digest: d})
}

func (w *writeBack) offer(it wbItem) {
	w.submit(wbKey{it.digest, it.manifest != nil}, func() bool {
		select {
		case w.q <- it:
			return true
		default:
			return false
		}
	})
}

// submit reserves key (a write already queued for it wins) and runs send under the read
// lock; closed, or send declining (the queue full), drops the write, counted.
func (w *writeBack) submit(key wbKey, send func() bool) {
	if _, dup := w.queued.LoadOrStore(key, true); dup {
		return
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed || !send() {
		w.queued.Delete(key)
		w.dropped.Add(1)
	}
}

// Then is what WriteBackImage does after an image's chunks and manifest reached tier t: what
// the layer above records (created is false if there was nothing to do).
type Then func(ctx context.Context, t chunkstore.Store) (created bool, err error)

// WriteBackImage writes image d (manifest m, read through a ChunkSource and now complete) to
// the write-back tier in the background: the chunks it lacks (from the local state), then m,
// then then's entry. Nothing after a failed step is written. Without write-back it does
// nothing.
func (c *Cache) WriteBackImage(d chunkstore.Digest, m *chunkstore.Manifest, then Then) {
	c.wb.offerImage(d, m, then, c.localChunk)
}

// localChunk returns chunk d, verified, from memory or the local state only.
func (c *Cache) localChunk(_ context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	if ch, ok := c.mem.get(d); ok {
		return ch, nil
	}
	if v, ok := c.pending.Load(d); ok {
		return v, nil
	}
	return c.readLocal(context.Background(), d)
}

type loadFunc func(context.Context, chunkstore.Digest) (*chunkstore.Chunk, error)

func (w *writeBack) offerImage(d chunkstore.Digest, m *chunkstore.Manifest, then Then, load loadFunc) {
	if w == nil {
		return
	}
	key := wbKey{d, true}
	w.submit(key, func() bool {
		w.wg.Go(func() {
			defer w.queued.Delete(key)
			if err := w.writeImage(d, m, then, load); err != nil {
				w.failed.Add(1)
				w.log.Warn("write-back of a completed image failed; the next host reads it from its origin", "image", d.String(), "tier", w.dst.String(), "err", err)
				return
			}
			w.log.Info("completed image written back", "image", d.String(), "tier", w.dst.String())
		})
		return true
	})
}

func (w *writeBack) writeImage(d chunkstore.Digest, m *chunkstore.Manifest, then Then, load loadFunc) error {
	ctx := context.Background()
	// Let the chunk write-backs already queued finish first (they would race the HEADs below
	// and their bodies would be sent twice).
	deadline := time.Now().Add(writeBackTimeout)
	for _, c := range m.Chunks {
		if !c.IsZero() {
			w.queued.WaitGone(wbKey{c, false}, deadline)
		}
	}
	seen := make(map[chunkstore.Digest]bool, len(m.Chunks))
	for _, c := range m.Chunks {
		if c.IsZero() || seen[c] {
			continue
		}
		seen[c] = true
		cctx, cancel := context.WithTimeout(ctx, writeBackTimeout)
		has, err := w.dst.HasChunk(cctx, c)
		if err == nil && !has {
			var ch *chunkstore.Chunk
			if ch, err = load(cctx, c); err == nil {
				var created bool
				if created, err = w.dst.PutChunk(cctx, ch); err == nil && created {
					w.chunks.Add(1)
					w.bytes.Add(int64(len(ch.Data())))
				}
			}
		}
		cancel()
		if err != nil {
			return fmt.Errorf("chunk %s: %w", c.Short(), err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, writeBackTimeout)
	defer cancel()
	had, err := w.dst.HasManifest(cctx, d)
	if err == nil && !had {
		_, err = w.dst.PutManifest(cctx, m)
	}
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if !had {
		w.manifests.Add(1)
	}
	if then == nil {
		return nil
	}
	created, err := then(cctx, w.dst)
	if err != nil {
		return fmt.Errorf("entry after the manifest: %w", err)
	}
	if created {
		w.entries.Add(1)
	} else {
		w.present.Add(1)
	}
	return nil
}

func (w *writeBack) write(it wbItem) {
	ctx, cancel := context.WithTimeout(context.Background(), writeBackTimeout)
	defer cancel()
	key := wbKey{it.digest, it.manifest != nil}
	var (
		created bool
		err     error
		kind    = "chunk"
	)
	if it.manifest != nil {
		kind = "manifest"
		var had bool
		if had, err = w.dst.HasManifest(ctx, it.digest); err == nil && !had {
			_, err = w.dst.PutManifest(ctx, it.manifest)
			created = err == nil
		}
	} else {
		created, err = w.dst.PutChunk(ctx, it.chunk)
	}
	w.queued.Delete(key)
	switch {
	case err != nil:
		w.failed.Add(1)
		w.log.Warn("write-back failed", "kind", kind, "digest", it.digest.String(), "tier", w.dst.String(), "err", err)
	case !created:
		w.present.Add(1)
	case it.manifest != nil:
		w.manifests.Add(1)
	default:
		w.chunks.Add(1)
		w.bytes.Add(int64(len(it.chunk.Data())))
	}
}

// close waits for the queued writes.
func (w *writeBack) close() {
	if w == nil {
		return
	}
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.q)
	}
	w.mu.Unlock()
	w.wg.Wait()
}

// flush waits until nothing is queued or being written (tests; a clean stop).
func (w *writeBack) flush() {
	if w == nil {
		return
	}
	w.queued.Wait()
}

// WriteBackSnapshot holds the write-back counters.
type WriteBackSnapshot = report.WriteBackSnapshot

func (w *writeBack) snapshot() *WriteBackSnapshot {
	if w == nil {
		return nil
	}
	return &WriteBackSnapshot{Tier: w.dst.String(), Chunks: w.chunks.Load(), Bytes: w.bytes.Load(),
		Manifests: w.manifests.Load(), Present: w.present.Load(), Failed: w.failed.Load(), Dropped: w.dropped.Load(),
		Entries: w.entries.Load()}
}
