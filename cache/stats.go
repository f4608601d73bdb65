package cache

import (
	"sync/atomic"
	"time"

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
type StatsSnapshot struct {
	Reads         int64 `json:"reads"`
	BytesRead     int64 `json:"bytes_read"`
	HoleBytes     int64 `json:"hole_bytes"`
	ReadErrors    int64 `json:"read_errors"`
	MemoryHits    int64 `json:"memory_hits"`
	SubBlockReads int64 `json:"sub_block_reads"`
	// ReadAheads counts reads of sequential streams read ahead (stream.go).
	ReadAheads      int64            `json:"read_aheads"`
	FetchesInFlight int64            `json:"fetches_in_flight"`
	LocalCorrupt    int64            `json:"local_corrupt"`
	Repairs         int64            `json:"repairs"`
	StoreErrors     int64            `json:"store_errors"`
	ManifestFetches int64            `json:"manifest_fetches"`
	FetchSeconds    float64          `json:"fetch_seconds"`
	Origins         []OriginSnapshot `json:"origins"`
	// WriteBack counts writes to the shared tier (nil: write-back is off).
	WriteBack *WriteBackSnapshot `json:"write_back,omitempty"`
}

// OriginSnapshot holds one origin's counters (tier.Snapshot).
type OriginSnapshot = tier.Snapshot

// Fetches sums chunk fetches over all origins.
func (s StatsSnapshot) Fetches() int64 {
	var n int64
	for _, o := range s.Origins {
		n += o.Fetches
	}
	return n
}

// OriginCorrupt sums corrupt answers over all origins.
func (s StatsSnapshot) OriginCorrupt() int64 {
	var n int64
	for _, o := range s.Origins {
		n += o.Corrupt
	}
	return n
}

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
