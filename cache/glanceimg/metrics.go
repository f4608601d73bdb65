package glanceimg

import "github.com/prometheus/client_golang/prometheus"

var (
	descRetries  = prometheus.NewDesc("basefs_glance_completion_retries_total", "Whole-image checks of lazily read Glance images that could not finish for a transient cause and were tried again.", nil, nil)
	descWaiting  = prometheus.NewDesc("basefs_glance_completions_waiting", "Lazily read Glance images whose completion waits to be tried again.", nil, nil)
	descIgnored  = prometheus.NewDesc("basefs_glance_tier_index_ignored_total", "Shared-tier Glance index entries ignored because basefs_manifest does not name their manifest (forged, stale or unproven).", nil, nil)
	descRecorded = prometheus.NewDesc("basefs_glance_manifests_recorded_total", "basefs_manifest properties this host recorded on Glance images it completed.", nil, nil)
)

// Collector exports the layer's counters (the same as Stats, so status and metrics agree).
func (l *Layer) Collector() prometheus.Collector { return collector{l} }

type collector struct{ l *Layer }

func (k collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRetries, descWaiting, descIgnored, descRecorded} {
		ch <- d
	}
}

func (k collector) Collect(ch chan<- prometheus.Metric) {
	s := k.l.Stats()
	ch <- prometheus.MustNewConstMetric(descRetries, prometheus.CounterValue, float64(s.CompletionRetries))
	ch <- prometheus.MustNewConstMetric(descWaiting, prometheus.GaugeValue, float64(len(s.Completing)))
	ch <- prometheus.MustNewConstMetric(descIgnored, prometheus.CounterValue, float64(s.TierIndexIgnored))
	ch <- prometheus.MustNewConstMetric(descRecorded, prometheus.CounterValue, float64(s.ManifestsRecorded))
}
