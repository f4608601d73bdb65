package cache

import (
	"sync/atomic"
	"time"

	"github.com/basefs/basefs/cache/report"
	"github.com/basefs/basefs/chunkstore/tier"
)

// Stats are the cache's counters; they back `basefs status` and the Prometheus metrics.
type Stats struct {
	reads, bytesRead, holeBytes, readErrors atomic.Int64
	memHits, subBlockReads, readAheads      atomic.Int64
	inFlight                                atomic.Int64
	localCorrupt, repairs, storeErrors      atomic.Int64
	manifestFetches                         atomic.Int64
	fetchNanos, fetchCount                  atomic.Int64
	tiers                                   *tier.Tiered // the origins' own counters
}

func (s *Stats) observeFetch(d time.Duration) {
	s.fetchNanos.Add(int64(d))
	s.fetchCount.Add(1)
}

// StatsSnapshot is a point-in-time copy of the counters.
type StatsSnapshot = report.StatsSnapshot

// OriginSnapshot holds one origin's counters (tier.Snapshot).
type OriginSnapshot = report.OriginSnapshot

func (s *Stats) snapshot() StatsSnapshot {
	out := StatsSnapshot{
		Reads: s.reads.Load(), BytesRead: s.bytesRead.Load(), HoleBytes: s.holeBytes.Load(),
		ReadErrors: s.readErrors.Load(), MemoryHits: s.memHits.Load(), SubBlockReads: s.subBlockReads.Load(),
		ReadAheads:      s.readAheads.Load(),
		FetchesInFlight: s.inFlight.Load(), LocalCorrupt: s.localCorrupt.Load(),
		Repairs: s.repairs.Load(), StoreErrors: s.storeErrors.Load(),
		ManifestFetches: s.manifestFetches.Load(),
		FetchSeconds:    time.Duration(s.fetchNanos.Load()).Seconds(),
		Origins:         s.tiers.Snapshots(),
	}
	return out
}

// keptCounters lists the cache's counters kept across serving processes (counters.go): its
// own, each origin's (by the origin's name) and the write-back's. Gauges are not kept.
func (c *Cache) keptCounters() []namedCounter {
	s := c.stats
	out := []namedCounter{
		{"reads", &s.reads}, {"bytes_read", &s.bytesRead}, {"hole_bytes", &s.holeBytes},
		{"read_errors", &s.readErrors}, {"memory_hits", &s.memHits}, {"sub_block_reads", &s.subBlockReads},
		{"read_aheads", &s.readAheads}, {"local_corrupt", &s.localCorrupt}, {"repairs", &s.repairs},
		{"store_errors", &s.storeErrors}, {"manifest_fetches", &s.manifestFetches},
		{"fetch_nanos", &s.fetchNanos}, {"fetch_count", &s.fetchCount},
	}
	for i := range out {
		out[i].name = "cache." + out[i].name
	}
	c.tiers.Each(func(name string, o *tier.Counters) {
		p := "origin." + name + "."
		out = append(out, namedCounter{p + "fetches", &o.Fetches}, namedCounter{p + "bytes", &o.Bytes},
			namedCounter{p + "misses", &o.Misses}, namedCounter{p + "corrupt", &o.Corrupt},
			namedCounter{p + "errors", &o.Errors}, namedCounter{p + "manifests", &o.Manifests})
	})
	if w := c.wb; w != nil {
		p := "write_back."
		out = append(out, namedCounter{p + "chunks", &w.chunks}, namedCounter{p + "manifests", &w.manifests},
			namedCounter{p + "present", &w.present}, namedCounter{p + "failed", &w.failed},
			namedCounter{p + "dropped", &w.dropped}, namedCounter{p + "bytes", &w.bytes},
			namedCounter{p + "entries", &w.entries})
	}
	c.keptMu.Lock()
	out = append(out, c.kept...)
	c.keptMu.Unlock()
	return out
}

// KeepCounter keeps counter v of a layer above across processes, as the cache's own, under
// name (it must be unique; call it before NewManager, which loads the saved values).
func (c *Cache) KeepCounter(name string, v *atomic.Int64) {
	c.keptMu.Lock()
	defer c.keptMu.Unlock()
	c.kept = append(c.kept, namedCounter{name, v})
}
