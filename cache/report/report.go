// Package report holds what the cache reports: its counters, its inventory of images, the
// progress of a fill, and what a cleanup or a scrub did. They are plain values, the daemon's
// control API carries them as they are (daemon/control), so this package is a leaf —
// chunkstore and the standard library — and a client of the API need not link the cache.
// Package cache names each of them too (cache.ImageInfo is report.ImageInfo).
package report

import (
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/tier"
)

// ImageInfo is one line of `basefs ls`.
type ImageInfo struct {
	Digest      chunkstore.Digest `json:"digest"`
	Size        int64             `json:"size"`
	Chunks      int               `json:"chunks"`
	Holes       int               `json:"holes"`
	Present     int               `json:"chunks_present"`
	Total       int               `json:"chunks_total"` // non-hole chunks
	StoredBytes int64             `json:"bytes_stored"`
}

// ManagerStats are the manager's counters.
type ManagerStats struct {
	ImagesRemoved    int64 `json:"images_removed"`
	ChunksRemoved    int64 `json:"chunks_removed"`
	BytesFreed       int64 `json:"bytes_freed"`
	Evictions        int64 `json:"evictions"`
	EvictedBytes     int64 `json:"evicted_bytes"`
	Scrubbed         int64 `json:"chunks_scrubbed"`
	ScrubbedBytes    int64 `json:"bytes_scrubbed"`
	ScrubCorrupt     int64 `json:"scrub_corrupt"`
	FilledChunks     int64 `json:"filled_chunks"`
	FilledBytes      int64 `json:"filled_bytes"`
	ImagesComplete   int64 `json:"images_completed_by_fill"`
	ProfilesRecorded int64 `json:"profiles_recorded"`
	ProfileChunks    int64 `json:"profile_chunks_prefetched"`
	Touched          int64 `json:"images_touched"`         // nova's utime on image names
	RemoveRefused    int64 `json:"unlinks_refused_in_use"` // nova's unlink of an image in use
	Adopted          int64 `json:"images_adopted"`         // downloads renamed to image names
	PrecacheAsked    int64 `json:"precache_utimes"`        // utimes to now (nova's cache_image)
	PrecacheInUse    int64 `json:"precache_in_use"`        // of them, of images in use: no fill
	Prefetches       int64 `json:"prefetches"`             // basefs prefetch requests
	PrecacheStarted  int64 `json:"precache_fills_started"` // fills started by either
}

// GCImage is one image's fate in a cleanup run.
type GCImage struct {
	Digest     chunkstore.Digest `json:"digest"`
	Action     string            `json:"action"` // "remove" or "keep"
	Reason     string            `json:"reason"`
	AgeSeconds int64             `json:"unused_seconds"`
	Users      []string          `json:"users,omitempty"`
}

// GCReport tells what a cleanup run did (or, dry, would do).
type GCReport struct {
	DryRun        bool      `json:"dry_run"`
	Images        []GCImage `json:"images"`
	ChunksRemoved int       `json:"chunks_removed"`
	BytesFreed    int64     `json:"bytes_freed"`
	Evicted       int       `json:"chunks_evicted"`
	EvictedBytes  int64     `json:"bytes_evicted"`
	StoredBytes   int64     `json:"bytes_stored"` // after the run
}

// ScrubReport tells what a scrub found.
type ScrubReport struct {
	Checked  int                 `json:"chunks_checked"`
	Bytes    int64               `json:"bytes_checked"`
	Corrupt  []chunkstore.Digest `json:"corrupt"`
	Repaired int                 `json:"repaired"`
	Failed   []string            `json:"failed,omitempty"` // corrupt and not repaired
}

// FillInfo is one fill's progress (basefs status).
type FillInfo struct {
	Image  chunkstore.Digest `json:"image"`
	Reason string            `json:"reason"`
	Rate   int64             `json:"rate"` // bytes a second
	// ToFetch is how many chunks were not local when it started (-1: not known, an image read
	// through a ChunkSource learns its chunks as they arrive).
	ToFetch  int64     `json:"chunks_to_fetch"`
	Chunks   int64     `json:"chunks_fetched"`
	Bytes    int64     `json:"bytes_fetched"`
	Failed   int64     `json:"chunks_failed"` // left for reads to fetch
	Running  bool      `json:"running"`
	Waiting  bool      `json:"waiting,omitempty"` // a precache's PrecacheDelay, before it fetches
	Complete bool      `json:"complete"`          // every chunk of the image was local when it ended
	Stopped  string    `json:"stopped,omitempty"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"` // how long it ran (so far)
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
	// Entries counts what the layer above recorded after a completed image (a Glance
	// image's basefs_manifest, cache/glanceimg).
	Entries int64 `json:"entries"`
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
