package cache

import "github.com/prometheus/client_golang/prometheus"

// Collector exports the cache's counters as Prometheus metrics (basefs_*). It reads the same
// counters as `basefs status`, so the two never disagree.
func (c *Cache) Collector() prometheus.Collector { return collector{c} }

type collector struct{ c *Cache }

var (
	descReads        = prometheus.NewDesc("basefs_reads_total", "Reads served from images.", nil, nil)
	descBytesRead    = prometheus.NewDesc("basefs_read_bytes_total", "Bytes served from images (holes included).", nil, nil)
	descReadErrors   = prometheus.NewDesc("basefs_read_errors_total", "Reads that failed (answered EIO).", nil, nil)
	descMemHits      = prometheus.NewDesc("basefs_memory_hits_total", "Chunk reads served from the verified in-memory cache.", nil, nil)
	descInFlight     = prometheus.NewDesc("basefs_fetches_in_flight", "Chunk fetches from origins in progress.", nil, nil)
	descLocalCorrupt = prometheus.NewDesc("basefs_local_corrupt_total", "Local chunks that failed verification (quarantined).", nil, nil)
	descRepairs      = prometheus.NewDesc("basefs_repairs_total", "Corrupt local chunks repaired from an origin.", nil, nil)
	descFetchSeconds = prometheus.NewDesc("basefs_fetch_seconds_total", "Time spent in successful chunk fetches.", nil, nil)
	descFetches      = prometheus.NewDesc("basefs_origin_fetches_total", "Chunks fetched from an origin.", []string{"origin"}, nil)
	descFetchBytes   = prometheus.NewDesc("basefs_origin_bytes_total", "Chunk bytes (uncompressed) fetched from an origin.", []string{"origin"}, nil)
	descOriginBad    = prometheus.NewDesc("basefs_origin_corrupt_total", "Wrong bytes served by an origin.", []string{"origin"}, nil)
	descOriginErrors = prometheus.NewDesc("basefs_origin_errors_total", "Failed fetches from an origin.", []string{"origin"}, nil)
	descOriginMisses = prometheus.NewDesc("basefs_origin_misses_total", "Chunks asked of an origin that it did not hold.", []string{"origin"}, nil)
	descWriteBack    = prometheus.NewDesc("basefs_write_back_total", "Write-backs to the shared tier by result (chunk, manifest, present, failed, dropped, entry).", []string{"tier", "result"}, nil)
	descWriteBackB   = prometheus.NewDesc("basefs_write_back_bytes_total", "Chunk bytes (uncompressed) written back to the shared tier.", []string{"tier"}, nil)
)

// Manager counters (when a manager runs).
var descManager = prometheus.NewDesc("basefs_manager_total", "The image cache manager's actions by kind (images_removed, chunks_removed, bytes_freed, evictions, evicted_bytes, chunks_scrubbed, scrub_corrupt, filled_chunks, filled_bytes, images_touched, unlinks_refused, images_adopted, profile_chunks, precache_utimes, precache_in_use, prefetches, precache_fills_started).", []string{"what"}, nil)

// descFills is the gauge of background fills running (first use, precache, prefetch).
var descFills = prometheus.NewDesc("basefs_fills_running", "Background fills of whole images running (first use, precache, prefetch).", nil, nil)

// descFillBytes is each running fill's progress (an image's series goes when its fill ends).
var descFillBytes = prometheus.NewDesc("basefs_fill_fetched_bytes", "Bytes a running background fill of an image has fetched, by image and reason.", []string{"image", "reason"}, nil)

// fetchLatency is the latency of chunk requests to each origin, by outcome.
func newFetchLatency() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "basefs_origin_fetch_seconds", Help: "Latency of chunk requests to an origin, by outcome (ok, miss, corrupt, error).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"origin", "outcome"})
}

func (k collector) Describe(ch chan<- *prometheus.Desc) {
	k.c.fetchLatency.Describe(ch)
	ch <- descManager
	ch <- descFills
	ch <- descFillBytes
	for _, d := range []*prometheus.Desc{descReads, descBytesRead, descReadErrors, descMemHits, descInFlight,
		descLocalCorrupt, descRepairs, descFetchSeconds, descFetches, descFetchBytes, descOriginBad, descOriginErrors,
		descOriginMisses, descWriteBack, descWriteBackB} {
		ch <- d
	}
}

func (k collector) Collect(ch chan<- prometheus.Metric) {
	s := k.c.Stats()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	counter(descReads, float64(s.Reads))
	counter(descBytesRead, float64(s.BytesRead))
	counter(descReadErrors, float64(s.ReadErrors))
	counter(descMemHits, float64(s.MemoryHits))
	ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(s.FetchesInFlight))
	counter(descLocalCorrupt, float64(s.LocalCorrupt))
	counter(descRepairs, float64(s.Repairs))
	counter(descFetchSeconds, s.FetchSeconds)
	for _, o := range s.Origins {
		counter(descFetches, float64(o.Fetches), o.Origin)
		counter(descFetchBytes, float64(o.Bytes), o.Origin)
		counter(descOriginBad, float64(o.Corrupt), o.Origin)
		counter(descOriginErrors, float64(o.Errors), o.Origin)
		counter(descOriginMisses, float64(o.Misses), o.Origin)
	}
	if w := s.WriteBack; w != nil {
		for _, r := range []struct {
			name string
			v    int64
		}{{"chunk", w.Chunks}, {"manifest", w.Manifests}, {"present", w.Present}, {"failed", w.Failed}, {"dropped", w.Dropped}, {"entry", w.Entries}} {
			counter(descWriteBack, float64(r.v), w.Tier, r.name)
		}
		counter(descWriteBackB, float64(w.Bytes), w.Tier)
	}
	k.c.fetchLatency.Collect(ch)
	if m := k.c.mgr.Load(); m != nil {
		ms := m.Stats()
		for _, r := range []struct {
			what string
			v    int64
		}{{"images_removed", ms.ImagesRemoved}, {"chunks_removed", ms.ChunksRemoved}, {"bytes_freed", ms.BytesFreed},
			{"evictions", ms.Evictions}, {"evicted_bytes", ms.EvictedBytes}, {"chunks_scrubbed", ms.Scrubbed},
			{"scrub_corrupt", ms.ScrubCorrupt}, {"filled_chunks", ms.FilledChunks}, {"filled_bytes", ms.FilledBytes},
			{"images_touched", ms.Touched}, {"unlinks_refused", ms.RemoveRefused}, {"images_adopted", ms.Adopted},
			{"profile_chunks", ms.ProfileChunks}, {"precache_utimes", ms.PrecacheAsked}, {"precache_in_use", ms.PrecacheInUse},
			{"prefetches", ms.Prefetches}, {"precache_fills_started", ms.PrecacheStarted}} {
			counter(descManager, float64(r.v), r.what)
		}
		ch <- prometheus.MustNewConstMetric(descFills, prometheus.GaugeValue, float64(m.fillsRunning.Load()))
		for _, f := range m.Fills() {
			if f.Running {
				ch <- prometheus.MustNewConstMetric(descFillBytes, prometheus.GaugeValue, float64(f.Bytes), f.Image.String(), f.Reason)
			}
		}
	}
}
