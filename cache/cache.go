package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/tier"
)

// Config configures a Cache.
type Config struct {
	// Local is the host's state; fetched chunks and manifests are stored in it.
	Local *local.Store
	// Origins are asked in order for what Local lacks.
	Origins []chunkstore.Getter
	// MemoryBytes bounds the in-memory cache of verified chunks (0: none kept).
	MemoryBytes int64
	// SubBlockBytes bounds the memory kept for sub-block digests (0: 64 MiB: 192 bytes per
	// 64 KiB chunk, i.e. ~22 GiB of local data), which let small reads verify only what they
	// read; a chunk whose digests were dropped is verified whole once more on its next read.
	SubBlockBytes int64
	// Names keeps the names other than digests that images are known by (nova's): removal
	// forgets them, adoption records one (nil: a table that refuses to record any).
	Names Names
	// OnManifest, when set, is told of every manifest the cache loads (an origin that reads
	// chunks out of whole images, like Glance by range, learns where they are).
	OnManifest func(*chunkstore.Manifest)
	// Logger receives corruption, repair and fetch-failure events (nil: discard).
	Logger *slog.Logger
	// WriteBack writes chunks and manifests fetched from origins behind the first shared tier
	// (an s3:// origin, see tier.go) to that tier too, asynchronously (writeback.go).
	WriteBack bool
	// Now is the clock images' uses are recorded and aged by (nil: time.Now); tests move it
	// instead of sleeping.
	Now func() time.Time
}

// Cache is the read path over a host's local state and its origins. It is safe for
// concurrent use. Lock order: Cache.mu, then an lru's mu; no lock is held across I/O.
type Cache struct {
	local   *local.Store
	origins []chunkstore.Getter
	tiers   *tier.Tiered // the origins, asked in order, with their counters
	// fetchLatency: chunk requests to each origin (metrics.go)
	fetchLatency *prometheus.HistogramVec
	log          *slog.Logger
	mem          *lru[*chunkstore.Chunk]   // chunks verified since last read from disk or network
	subs         *lru[[]chunkstore.Digest] // sub-block digests of verified, raw-stored local chunks
	fds          *fdCache                  // open object files of raw-stored chunks, for sub-block reads
	stats        *Stats

	chunkFlight    singleflight.Group // keyed by chunk digest
	manifestFlight singleflight.Group // keyed by image digest

	mu     sync.Mutex
	images map[chunkstore.Digest]*Image // by digest, or by a ChunkSource's key

	names      Names
	keptMu     sync.Mutex
	kept       []namedCounter // counters of layers above kept across processes (KeepCounter)
	onManifest func(*chunkstore.Manifest)
	clock      func() time.Time // Config.Now (lastuse.go)

	// noVerify is the bench-only switch that serves local chunks without hashing them.
	noVerify atomic.Bool

	// Fetched chunks are served as soon as they are verified and written to the local state
	// by background writers in batches (persist.go): pending holds them until they are
	// durable, so they are never fetched twice.
	persistCfg persistConfig
	writes     chan *chunkstore.Chunk
	pending    pendingSet[chunkstore.Digest, *chunkstore.Chunk]
	writers    sync.WaitGroup
	closed     atomic.Bool
	wmu        sync.RWMutex // sends on writes hold it shared; Close holds it to close writes
	inline     atomic.Int64 // chunks their fetching reader wrote itself (the queue was full)

	wb *writeBack // nil: no write-back

	mgr   atomic.Pointer[Manager] // the image cache manager, if one runs
	fg    foreground              // fetches guest reads wait on (background fill yields to them)
	reads readTimes               // when each chunk was last read (capacity eviction order)

	releases signal // broadcast when an image's file handle is released
}

// New returns a Cache. The daemon should clean the state's tmp/ (local.Store.CleanTemp)
// before, once it knows it is the only writer.
func New(cfg Config) (*Cache, error) { return newCache(cfg, defaultPersist) }

// newCache is New with the persist workers' configuration (persist.go) given: tests and
// benchmarks compare them.
func newCache(cfg Config, pc persistConfig) (*Cache, error) {
	if cfg.Local == nil {
		return nil, errors.New("cache: no local store")
	}
	if cfg.SubBlockBytes == 0 {
		cfg.SubBlockBytes = 64 << 20
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cache{
		local:      cfg.Local,
		origins:    cfg.Origins,
		log:        log,
		mem:        newLRU(cfg.MemoryBytes, func(c *chunkstore.Chunk) int64 { return int64(len(c.Data())) }),
		subs:       newLRU(cfg.SubBlockBytes, func(s []chunkstore.Digest) int64 { return int64(len(s))*chunkstore.DigestSize + 64 }),
		fds:        newFDCache(openChunkBudget()),
		images:     make(map[chunkstore.Digest]*Image),
		names:      cfg.Names,
		onManifest: cfg.OnManifest,
		clock:      cfg.Now,
	}
	if c.names == nil {
		c.names = noNames{}
	}
	c.tiers = tier.New(c.origins, log)
	c.fetchLatency = newFetchLatency()
	c.tiers.Observe(func(i int, d time.Duration, err error) {
		outcome := "ok"
		switch {
		case err == nil:
		case chunkstore.IsNotFound(err):
			outcome = "miss"
		case chunkstore.IsCorrupt(err):
			outcome = "corrupt"
		default:
			outcome = "error"
		}
		c.fetchLatency.WithLabelValues(c.origins[i].String(), outcome).Observe(d.Seconds())
	})
	c.stats = &Stats{tiers: c.tiers}
	if cfg.WriteBack {
		i := firstSharedTier(c.origins)
		if i < 0 {
			return nil, errors.New("cache: write-back needs a shared tier (an s3:// origin) among the origins")
		}
		c.wb = newWriteBack(c.origins[i].(chunkstore.SharedTier), i, log)
	}
	c.startPersist(pc)
	return c, nil
}

// Close waits until every fetched chunk is durable in the local state. The Cache must not be
// used afterwards.
func (c *Cache) Close() {
	c.wmu.Lock()
	first := c.closed.CompareAndSwap(false, true)
	if first {
		close(c.writes)
	}
	c.wmu.Unlock()
	if first {
		c.writers.Wait()
		c.fds.closeAll()
		c.wb.close()
		c.saveUses() // the next process (a handover, a restart) knows this one's reads
	}
}

// dropChunk forgets what the cache derived from a local chunk the manager deleted.
func (c *Cache) dropChunk(d chunkstore.Digest) {
	c.subs.remove(d)
	c.fds.drop(d)
}

// Local returns the local store.
func (c *Cache) Local() *local.Store { return c.local }

// QuarantineDir is where chunks that failed verification are moved.
func (c *Cache) QuarantineDir() string { return filepath.Join(c.local.Root(), "quarantine") }

// SetVerify turns read-time verification of local chunks on or off. Off exists only for
// basefs-bench's verify-cost scenario; it also empties the verified-chunk cache.
func (c *Cache) SetVerify(on bool) {
	c.noVerify.Store(!on)
	c.mem.purge()
	c.subs.purge()
}

// Image returns the image named d, reading its manifest from the local state or, when it is
// not there, fetching it from the origins (accepted only if it hashes to d) and storing it.
func (c *Cache) Image(ctx context.Context, d chunkstore.Digest) (*Image, error) {
	c.mu.Lock()
	im := c.images[d]
	c.mu.Unlock()
	if im != nil {
		// Not a use: nova stats its bases to age them; reads, opens and utime are uses.
		return im, nil
	}
	v, err, _ := c.manifestFlight.Do(string(d[:]), func() (any, error) {
		m, err := c.local.GetManifest(ctx, d)
		if chunkstore.IsNotFound(err) {
			m, err = c.fetchManifest(ctx, d)
		}
		if err != nil {
			return nil, err
		}
		if c.onManifest != nil {
			c.onManifest(m)
		}
		im := &Image{c: c, digest: d, m: m} // last use: the manifest's mtime until read
		c.mu.Lock()
		old := c.images[d]
		if old != nil {
			im = old
		} else {
			c.images[d] = im
		}
		c.mu.Unlock()
		if mgr := c.mgr.Load(); mgr != nil && old == nil {
			mgr.imageLoaded(im)
		}
		return im, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*Image), nil
}

// Forget drops an image from memory (after cleanup removed its manifest).
func (c *Cache) Forget(d chunkstore.Digest) {
	c.mu.Lock()
	delete(c.images, d)
	c.mu.Unlock()
}

func (c *Cache) fetchManifest(ctx context.Context, d chunkstore.Digest) (*chunkstore.Manifest, error) {
	m, i, err := c.tiers.GetManifestFrom(ctx, d)
	if err != nil {
		return nil, err
	}
	if _, err := c.local.PutManifest(ctx, m); err != nil {
		return nil, fmt.Errorf("image %s: store manifest: %w", d.Short(), err)
	}
	c.stats.manifestFetches.Add(1)
	c.wb.offerManifest(i, d, m) // to the shared tier, if m came from behind it
	return m, nil
}

// StoreManifest stores manifest m, which a layer above fetched from one of the origins by
// its digest (so verified), in the local state, counted as a manifest fetch.
func (c *Cache) StoreManifest(ctx context.Context, m *chunkstore.Manifest) (chunkstore.Digest, error) {
	d, err := c.local.PutManifest(ctx, m)
	if err == nil {
		c.stats.manifestFetches.Add(1)
	}
	return d, err
}

// Images lists the images whose manifests are in the local state.
func (c *Cache) Images(ctx context.Context) ([]chunkstore.Digest, error) {
	var ds []chunkstore.Digest
	err := c.local.WalkManifests(ctx, func(d chunkstore.Digest) error { ds = append(ds, d); return nil })
	return ds, err
}

// Chunk returns chunk d, verified: from memory, from the local state (verified as read), or
// fetched once from the origins however many callers ask at the same time.
func (c *Cache) Chunk(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	if ch, ok := c.mem.get(d); ok {
		c.stats.memHits.Add(1)
		return ch, nil
	}
	c.fg.enterChunk(d)
	defer c.fg.leaveChunk(d)
	v, err, _ := c.chunkFlight.Do(string(d[:]), func() (any, error) {
		// The flight outlives any one reader: a cancelled reader must not fail the others.
		return c.loadChunk(context.WithoutCancel(ctx), d)
	})
	if err != nil {
		return nil, err
	}
	return v.(*chunkstore.Chunk), nil
}

// fetchForFill makes chunk d local for background fill: through the same flight as reads
// (one fetch per chunk), without counting as a guest read.
func (c *Cache) fetchForFill(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	v, err, _ := c.chunkFlight.Do(string(d[:]), func() (any, error) {
		return c.loadChunk(ctx, d)
	})
	if err != nil {
		return nil, err
	}
	return v.(*chunkstore.Chunk), nil
}

// noteUse is called when an image is opened.
func (c *Cache) noteUse(im *Image) {
	if mgr := c.mgr.Load(); mgr != nil {
		mgr.imageUsed(im)
	}
}

// originHas reports whether some origin holds chunk d (so it may be evicted though in use).
func (c *Cache) originHas(ctx context.Context, d chunkstore.Digest) bool {
	ok, _ := c.tiers.HasChunk(ctx, d)
	return ok
}

// readTimes records when each chunk was last read, in shards to keep the read path cheap.
type readTimes struct {
	shards [16]struct {
		sync.Mutex
		m map[chunkstore.Digest]int64
	}
}

func (r *readTimes) touch(d chunkstore.Digest) {
	s := &r.shards[d[0]&15]
	now := time.Now().UnixNano()
	s.Lock()
	if s.m == nil {
		s.m = make(map[chunkstore.Digest]int64)
	}
	s.m[d] = now
	s.Unlock()
}

// lastRead returns when chunk d was last read, or fallback if not since the daemon started.
func (c *Cache) lastRead(d chunkstore.Digest, fallback time.Time) int64 {
	s := &c.reads.shards[d[0]&15]
	s.Lock()
	t, ok := s.m[d]
	s.Unlock()
	if ok {
		return t
	}
	return fallback.UnixNano()
}

func (c *Cache) loadChunk(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	if v, ok := c.pending.Load(d); ok {
		return v, nil // fetched and verified, being written
	}
	ch, err := c.readLocal(ctx, d)
	if err == nil {
		c.mem.add(d, ch)
		return ch, nil
	}
	switch {
	case chunkstore.IsCorrupt(err):
		return c.repairInFlight(ctx, d, err)
	case chunkstore.IsNotFound(err):
		return c.fetchChunk(ctx, d)
	default:
		return nil, err
	}
}

// readLocal reads chunk d from the local state and verifies it; for a chunk stored raw it
// also derives its sub-block digests, on another core while the whole chunk is hashed.
func (c *Cache) readLocal(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	data, enc, err := c.local.ReadChunkData(d)
	if err != nil {
		return nil, err
	}
	if c.noVerify.Load() {
		return chunkstore.UnverifiedChunk(d, data), nil
	}
	var subs []chunkstore.Digest
	var wg sync.WaitGroup
	if enc == chunkstore.EncodingRaw && len(data) >= SubBlockSize {
		wg.Go(func() { subs = subBlockDigests(data) })
	}
	ch, err := chunkstore.VerifyChunk(d, data)
	wg.Wait()
	if err != nil {
		err.(*chunkstore.CorruptError).Where = c.local.ChunkPath(d)
		return nil, err
	}
	if subs != nil {
		c.subs.add(d, subs)
	}
	return ch, nil
}

// fetchChunk asks the origins in order; the first good copy is stored locally and returned.
func (c *Cache) fetchChunk(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	c.stats.inFlight.Add(1)
	defer c.stats.inFlight.Add(-1)
	start := time.Now()
	ch, i, err := c.tiers.GetChunkFrom(ctx, d)
	if err != nil {
		return nil, err
	}
	c.stats.observeFetch(time.Since(start))
	c.mem.add(d, ch)
	c.pending.Store(d, ch)
	c.wb.offerChunk(i, ch) // to the shared tier, if ch came from behind it (never blocks)
	c.enqueueWrite(ch)
	return ch, nil
}

// Stats returns a snapshot of the counters.
func (c *Cache) Stats() StatsSnapshot {
	s := c.stats.snapshot()
	s.WriteBack = c.wb.snapshot()
	return s
}

// FlushWriteBack waits until the write-backs queued so far are done.
func (c *Cache) FlushWriteBack() { c.wb.flush() }
