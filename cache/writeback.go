package cache

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

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
type writeBack struct {
	dst chunkstore.Store // the shared tier
	idx int              // its index in Cache.origins
	log *slog.Logger

	mu     sync.RWMutex // guards closed against sends on a closed q (a late fetch after Close)
	closed bool
	q      chan wbItem
	wg     sync.WaitGroup
	queued sync.Map // wbKey → true while waiting or being written: one fetch queues one write

	chunks, manifests, present, failed, dropped atomic.Int64
	bytes                                       atomic.Int64
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
		if _, ok := o.(sharedTier); ok {
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
	key := wbKey{it.digest, it.manifest != nil}
	if _, dup := w.queued.LoadOrStore(key, true); dup {
		return
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.queued.Delete(key)
		w.dropped.Add(1)
		return
	}
	select {
	case w.q <- it:
	default:
		w.queued.Delete(key)
		w.dropped.Add(1)
	}
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
	for {
		empty := true
		w.queued.Range(func(any, any) bool { empty = false; return false })
		if empty {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WriteBackSnapshot holds the write-back counters.
type WriteBackSnapshot struct {
	Tier      string `json:"tier"`
	Chunks    int64  `json:"chunks"`    // chunks written to the tier
	Bytes     int64  `json:"bytes"`     // their uncompressed bytes
	Manifests int64  `json:"manifests"` // manifests written to the tier
	Present   int64  `json:"present"`   // offered but already there (put-if-absent)
	Failed    int64  `json:"failed"`    // writes that failed (the tier down, refused, …)
	Dropped   int64  `json:"dropped"`   // not queued: the queue was full
}

func (w *writeBack) snapshot() *WriteBackSnapshot {
	if w == nil {
		return nil
	}
	return &WriteBackSnapshot{Tier: w.dst.String(), Chunks: w.chunks.Load(), Bytes: w.bytes.Load(),
		Manifests: w.manifests.Load(), Present: w.present.Load(), Failed: w.failed.Load(), Dropped: w.dropped.Load()}
}
