package cache

import (
	"context"
	"os"
	"sort"

	"github.com/basefs/basefs/chunkstore"
)

// enforceCapacity evicts chunks until the local chunk objects fit CacheSize: first chunks no
// image references, then chunks of unused images, least recently read first; chunks of
// images in use only if an origin can give them again.
func (m *Manager) enforceCapacity(ctx context.Context, users map[chunkstore.Digest][]string, dry bool, rep *GCReport) error {
	type cand struct {
		d    chunkstore.Digest
		size int64
		rank int // 0 unreferenced, 1 unused image, 2 in-use image
		last int64
	}
	inUseChunks := make(map[chunkstore.Digest]bool)
	refs := make(map[chunkstore.Digest]bool)
	err := m.c.Local().WalkManifests(ctx, func(d chunkstore.Digest) error {
		man, err := m.c.Local().GetManifest(ctx, d)
		if err != nil {
			return nil // removed meanwhile
		}
		for _, c := range man.Chunks {
			refs[c] = true
			if len(users[d]) > 0 {
				inUseChunks[c] = true
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	var cands []cand
	var total int64
	err = m.c.Local().WalkChunks(ctx, func(d chunkstore.Digest) error {
		fi, err := os.Stat(m.c.Local().ChunkPath(d))
		if err != nil {
			return nil
		}
		total += fi.Size()
		c := cand{d: d, size: fi.Size(), last: m.c.lastRead(d, fi.ModTime())}
		switch {
		case !refs[d]:
			c.rank = 0
		case inUseChunks[d]:
			c.rank = 2
		default:
			c.rank = 1
		}
		cands = append(cands, c)
		return nil
	})
	if err != nil {
		return err
	}
	rep.StoredBytes = total
	if m.cfg.CacheSize < 0 || total <= m.cfg.CacheSize {
		return nil
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].rank != cands[j].rank {
			return cands[i].rank < cands[j].rank
		}
		return cands[i].last < cands[j].last
	})
	var evicted []chunkstore.Digest
	defer func() {
		if err := m.c.Local().SyncChunkDirs(evicted); err != nil {
			m.log.Warn("chunk evictions not synced", "err", err)
		}
	}()
	for _, c := range cands {
		if total <= m.cfg.CacheSize {
			break
		}
		if c.rank == 2 && !m.c.originHas(ctx, c.d) {
			continue // in use and nowhere else: never evicted
		}
		rep.Evicted++
		rep.EvictedBytes += c.size
		total -= c.size
		if !dry {
			if err := m.c.Local().DeleteChunk(ctx, c.d); err != nil {
				return err
			}
			evicted = append(evicted, c.d)
			m.c.dropChunk(c.d)
			m.evictions.Add(1)
			m.evictedBytes.Add(c.size)
		}
	}
	rep.StoredBytes = total
	if !dry {
		m.log.Info("capacity bound applied", "evicted_chunks", rep.Evicted, "evicted_bytes", rep.EvictedBytes, "stored_bytes", total, "cache_size", m.cfg.CacheSize)
	}
	if total > m.cfg.CacheSize {
		m.log.Warn("local chunks exceed --cache-size: the rest belong to images in use and no origin has them", "stored_bytes", total, "cache_size", m.cfg.CacheSize)
	}
	return nil
}
