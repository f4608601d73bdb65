package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/basefs/basefs/cache/report"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/importer"
	"github.com/basefs/basefs/chunkstore/inspect"
)

// ManagerConfig configures the image cache manager.
type ManagerConfig struct {
	// MinAge: an image unused for longer is removed by cleanup (nova's
	// remove_unused_original_minimum_age_seconds, 86400 s by default there; 0: as soon as
	// it is unused).
	MinAge time.Duration
	// KeepUnused: cleanup removes no image for being unused, whatever its age (nova's
	// remove_unused_base_images = False); the capacity bound still evicts chunks.
	KeepUnused bool
	// CacheSize bounds the bytes of local chunk objects (negative: no bound; 0: nothing
	// beyond chunks of images in use that no origin can give again).
	CacheSize int64
	// ScrubRate is how many bytes a second background scrub re-verifies (0: no background scrub).
	ScrubRate int64
	// FillRate is how many bytes a second background fill fetches after an image is first
	// used (0: no background fill).
	FillRate int64
	// PrefetchRate is how many bytes a second a precache (nova's utime to now of an unused
	// image) or a prefetch (Prefetch) fetches (0: neither runs; utime only records use).
	PrefetchRate int64
	// PrecacheDelay is how long a precache waits before it fetches anything, and then starts
	// only if the image is still unused: nova's spawn utimes a base just before it creates the
	// overlay on it (0: at once).
	PrecacheDelay time.Duration
	// ProfileWindow is how long after its first read an image's boot profile is recorded
	// (0: no profiles are recorded; existing ones are still used).
	ProfileWindow time.Duration
	// Interval is how often cleanup and the capacity bound run (0: never periodically;
	// GC still runs on request).
	Interval time.Duration
	// InUse returns the images that back instance overlays, with who uses them (nil: none
	// known beyond open files).
	InUse func(ctx context.Context) (map[chunkstore.Digest][]string, error)
	// Counters, when set, is the file the counters are kept in across processes
	// (counters.go; CountersPath): loaded by NewManager, kept from RefreshCounters on.
	Counters string
	// ImportLimits bound an adopted download (its size; the free space kept).
	ImportLimits importer.Limits
	// Refusals records the adopted downloads inspection refused (nil: not recorded).
	Refusals *inspect.Refusals
}

// Manager is the image cache manager: nova's semantics (an image in use is never removed;
// unused ones go after a minimum age) at chunk granularity, plus a capacity bound, scrub,
// background fill and boot profiles. Every action is logged and counted.
type Manager struct {
	c   *Cache // through its methods only
	cfg ManagerConfig
	log *slog.Logger

	gcMu   sync.Mutex // one cleanup or capacity run at a time
	fillMu sync.Mutex
	fills  map[chunkstore.Digest]*fillJob // each image's last fill in this process (precache.go)
	pf     prefetcher                     // boot-profile prefetches (fill.go)

	imagesRemoved, chunksRemoved, bytesFreed  atomic.Int64
	evictions, evictedBytes                   atomic.Int64
	scrubbed, scrubbedBytes, scrubCorrupt     atomic.Int64
	filledChunks, filledBytes, imagesComplete atomic.Int64
	profilesRecorded, profileChunks           atomic.Int64
	touched, removeRefused, adopted           atomic.Int64  // nova's utime, refused unlinks, adoptions
	precacheAsked, precacheInUse, prefetches  atomic.Int64  // utimes to now, of them in use; basefs prefetch
	precacheStarted                           atomic.Int64  // fills precache or prefetch started
	fillsRunning                              atomic.Int64  // a gauge, not saved
	base                                      savedCounters // the saved counters last loaded (counters.go)
}

// NewManager attaches a manager to c.
// NewManager returns the manager of c; with cfg.Counters its counters start where the last
// process left them (a file that cannot be read is an error).
func NewManager(c *Cache, cfg ManagerConfig) (*Manager, error) {
	m := &Manager{c: c, cfg: cfg, log: c.log, fills: make(map[chunkstore.Digest]*fillJob)}
	if cfg.Counters != "" {
		if err := m.loadCounters(cfg.Counters); err != nil {
			return nil, err
		}
	}
	c.mgr.Store(m)
	return m, nil
}

// ManagerStats are the manager's counters.
type ManagerStats = report.ManagerStats

// Stats returns the counters.
func (m *Manager) Stats() ManagerStats {
	var s ManagerStats
	for _, c := range m.counters() {
		*c.field(&s) = c.v.Load()
	}
	return s
}

// Run runs cleanup and the capacity bound every Interval, and background scrub when
// ScrubRate is set, until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	if m.cfg.ScrubRate > 0 {
		go func() {
			for ctx.Err() == nil {
				if _, err := m.Scrub(ctx, m.cfg.ScrubRate); err != nil && ctx.Err() == nil {
					m.log.Error("scrub failed", "err", err)
				}
				sleep(ctx, scrubPause)
			}
		}()
	}
	if m.cfg.Interval <= 0 {
		return // no periodic cleanup: GC runs on request only
	}
	for ctx.Err() == nil {
		if _, err := m.GC(ctx, false); err != nil && ctx.Err() == nil {
			m.log.Error("cleanup failed", "err", err)
		}
		sleep(ctx, m.cfg.Interval)
	}
}

// scrubPause separates background scrub passes (each is paced by ScrubRate).
const scrubPause = time.Minute

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// GCImage is one image's fate in a cleanup run.
type GCImage = report.GCImage

// GCReport tells what a cleanup run did (or, dry, would do).
type GCReport = report.GCReport

// inUse merges the configured in-use scan with images that have open file handles.
func (m *Manager) inUse(ctx context.Context) (map[chunkstore.Digest][]string, error) {
	users := make(map[chunkstore.Digest][]string)
	if m.cfg.InUse != nil {
		u, err := m.cfg.InUse(ctx)
		if err != nil {
			return nil, fmt.Errorf("find images in use: %w", err)
		}
		for d, who := range u {
			users[d] = append(users[d], who...)
		}
	}
	for _, d := range m.c.openImages() {
		users[d] = append(users[d], "open file")
	}
	return users, nil
}

// GC removes images unused for longer than MinAge that no instance uses — their manifests
// and every chunk no remaining image references — then applies the capacity bound. With dry
// set it changes nothing and reports what it would do.
func (m *Manager) GC(ctx context.Context, dry bool) (*GCReport, error) {
	m.gcMu.Lock()
	defer m.gcMu.Unlock()
	unlock, err := m.c.Local().ExclusiveRefs(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	users, err := m.inUse(ctx)
	if err != nil {
		return nil, err
	}
	rep := &GCReport{DryRun: dry}
	var remove []chunkstore.Digest
	if !dry {
		m.c.saveUses() // so a restarted daemon still knows the reads of this one
	}
	now := m.c.now()
	err = m.c.Local().WalkManifests(ctx, func(d chunkstore.Digest) error {
		t, err := m.c.lastUse(d)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		age := now.Sub(t)
		g := GCImage{Digest: d, AgeSeconds: int64(age / time.Second), Users: users[d]}
		switch {
		case len(users[d]) > 0:
			g.Action, g.Reason = "keep", "in use"
		case m.cfg.KeepUnused:
			g.Action, g.Reason = "keep", "removing unused images is off (remove_unused_base_images)"
		case age < m.cfg.MinAge:
			g.Action, g.Reason = "keep", fmt.Sprintf("unused for %s, less than the minimum age %s", age.Round(time.Second), m.cfg.MinAge)
		default:
			g.Action, g.Reason = "remove", fmt.Sprintf("unused for %s, more than the minimum age %s", age.Round(time.Second), m.cfg.MinAge)
			remove = append(remove, d)
		}
		rep.Images = append(rep.Images, g)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(rep.Images, func(i, j int) bool { return rep.Images[i].Digest.String() < rep.Images[j].Digest.String() })

	if err := m.removeLocked(ctx, remove, nil, dry, rep); err != nil {
		return rep, err
	}
	if err := m.enforceCapacity(ctx, users, dry, rep); err != nil {
		return rep, err
	}
	return rep, nil
}

// removeLocked removes images — first their names, then their manifests (each removal
// synced), profiles and in-memory state — then every local chunk of theirs, or in extra, that
// no remaining image references; with dry set it only counts. A crash part way leaves each
// image whole or gone (its chunks at worst orphans, evicted first by the capacity bound). The
// caller holds gcMu and the exclusive side of the reference lock (chunkstore/local refs.go).
func (m *Manager) removeLocked(ctx context.Context, remove, extra []chunkstore.Digest, dry bool, rep *GCReport) error {
	refs, manifests, err := m.references(ctx, remove)
	if err != nil {
		return err
	}
	var orphans []chunkstore.Digest
	seen := make(map[chunkstore.Digest]bool)
	add := func(c chunkstore.Digest) {
		if !c.IsZero() && !refs[c] && !seen[c] {
			seen[c] = true
			orphans = append(orphans, c)
		}
	}
	for _, man := range manifests {
		for _, c := range man.Chunks {
			add(c)
		}
	}
	for _, c := range extra {
		add(c)
	}
	for _, d := range remove {
		if !dry {
			if err := m.c.names.Forget(d, ""); err != nil {
				return err
			}
			if err := m.c.Local().DeleteManifest(ctx, d); err != nil {
				return err
			}
			os.Remove(ProfilePath(m.c.Local().Root(), d))
			m.c.forgetUse(d)
			m.stopFill(d, "image removed")
			m.c.Forget(d)
			m.imagesRemoved.Add(1)
			m.log.Info("removed image", "image", d.String(), "min_age", m.cfg.MinAge)
		}
	}
	var deleted []chunkstore.Digest
	defer func() {
		if err := m.c.Local().SyncChunkDirs(deleted); err != nil {
			m.log.Warn("chunk deletions not synced", "err", err)
		}
	}()
	for _, c := range orphans {
		n, err := m.c.Local().ChunkStoredSize(c)
		if err != nil {
			continue // not present locally (lazy)
		}
		rep.ChunksRemoved++
		rep.BytesFreed += n
		if !dry {
			if err := m.c.Local().DeleteChunk(ctx, c); err != nil {
				return err
			}
			deleted = append(deleted, c)
			m.c.dropChunk(c)
			m.chunksRemoved.Add(1)
			m.bytesFreed.Add(n)
		}
	}
	return nil
}

// references returns the set of chunks referenced by the local images other than those in
// except, and the manifests of those in except.
func (m *Manager) references(ctx context.Context, except []chunkstore.Digest) (map[chunkstore.Digest]bool, []*chunkstore.Manifest, error) {
	skip := make(map[chunkstore.Digest]bool, len(except))
	for _, d := range except {
		skip[d] = true
	}
	refs := make(map[chunkstore.Digest]bool)
	var removed []*chunkstore.Manifest
	err := m.c.Local().WalkManifests(ctx, func(d chunkstore.Digest) error {
		man, err := m.c.Local().GetManifest(ctx, d)
		if err != nil {
			if chunkstore.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("manifest %s: %w", d.Short(), err)
		}
		if skip[d] {
			removed = append(removed, man)
			return nil
		}
		for _, c := range man.Chunks {
			refs[c] = true
		}
		return nil
	})
	return refs, removed, err
}

// ScrubReport tells what a scrub found.
type ScrubReport = report.ScrubReport

// Scrub re-verifies every local chunk at most rate bytes a second (0: as fast as it can),
// quarantining corrupt ones and repairing them from an origin.
func (m *Manager) Scrub(ctx context.Context, rate int64) (*ScrubReport, error) {
	var todo []chunkstore.Digest
	if err := m.c.Local().WalkChunks(ctx, func(d chunkstore.Digest) error { todo = append(todo, d); return nil }); err != nil {
		return nil, err
	}
	rep := &ScrubReport{}
	lim := NewLimiter(rate)
	for _, d := range todo {
		if m.c.isPending(d) {
			continue
		}
		_, err := m.c.Local().GetChunk(ctx, d)
		switch {
		case err == nil:
		case chunkstore.IsNotFound(err):
			continue // evicted or removed meanwhile
		case chunkstore.IsCorrupt(err):
			rep.Corrupt = append(rep.Corrupt, d)
			m.scrubCorrupt.Add(1)
			m.log.Error("scrub found a corrupt chunk", "chunk", d.String(), "err", err)
			if _, rerr := m.c.repair(ctx, d, err); rerr != nil {
				rep.Failed = append(rep.Failed, fmt.Sprintf("chunk %s: %v", d, rerr))
				continue
			}
			rep.Repaired++
		default:
			return rep, err
		}
		n, _ := m.c.Local().ChunkStoredSize(d)
		rep.Checked++
		rep.Bytes += n
		m.scrubbed.Add(1)
		m.scrubbedBytes.Add(n)
		if err := lim.Wait(ctx, n); err != nil {
			return rep, err
		}
	}
	m.c.Flush()
	return rep, nil
}
