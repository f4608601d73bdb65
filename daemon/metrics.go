package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// requestLatency is the FUSE request latency by operation (basefs_fuse_request_seconds).
var requestLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Name: "basefs_fuse_request_seconds", Help: "Latency of FUSE requests served, by operation.",
	Buckets: prometheus.ExponentialBuckets(0.00001, 2, 20),
}, []string{"op"})

// The daemon's own metrics beside the cache's (cache.Collector) and the FUSE latency
// (requestLatency): what the alert rules (packaging/basefs.rules.yml) watch besides those.
//
//	basefs_build_info{version}          1: which binary serves (after an upgrade, the new one)
//	basefs_state_free_bytes             bytes available to basefs on the state directory's file system
//	basefs_state_size_bytes             that file system's size
//	basefs_state_min_free_bytes         the reserve (--min-free) that chunk writes and imports leave free there
//	basefs_glance_up                    1 when Glance answered its last listing, 0 when not (absent without Glance)
//	basefs_handover_failures_total      restarts (reloads, upgrades) whose new serving process did not take over
func daemonMetrics(version, state string, minFree int64, glanceOK func() (configured, up bool)) []prometheus.Collector {
	statfs := func(f func(*unix.Statfs_t) float64) func() float64 {
		return func() float64 {
			var s unix.Statfs_t
			if unix.Statfs(state, &s) != nil {
				return -1
			}
			return f(&s)
		}
	}
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "basefs_build_info", Help: "The serving binary's version (always 1).",
			ConstLabels: prometheus.Labels{"version": version}}, func() float64 { return 1 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "basefs_state_free_bytes", Help: "Bytes available on the state directory's file system (-1: statfs failed)."},
			statfs(func(s *unix.Statfs_t) float64 { return float64(s.Bavail) * float64(s.Bsize) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "basefs_state_size_bytes", Help: "Size of the state directory's file system (-1: statfs failed)."},
			statfs(func(s *unix.Statfs_t) float64 { return float64(s.Blocks) * float64(s.Bsize) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "basefs_state_min_free_bytes", Help: "The reserve (--min-free) that fetched chunks, imports and conversions leave free on the state's file system (0: none)."},
			func() float64 { return float64(minFree) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "basefs_handover_failures_total", Help: "Restarts (reload, upgrade) whose new serving process did not take over the FUSE connection."},
			func() float64 { return float64(HandoverFailures(state)) }),
	}
	if configured, _ := glanceOK(); configured {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "basefs_glance_up", Help: "1 when Glance answered the last image listing, else 0."},
			func() float64 {
				if _, up := glanceOK(); up {
					return 1
				}
				return 0
			}))
	}
	return cs
}

// handoverFailuresPath keeps the count of failed restarts: written by the supervisor, read by
// whichever serving process answers the scrape.
func handoverFailuresPath(state string) string { return filepath.Join(state, "handover-failures") }

// HandoverFailures returns how many restarts failed so far (CountFailures).
func HandoverFailures(state string) int64 {
	b, err := os.ReadFile(handoverFailuresPath(state))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

// CountFailures wraps a supervisor's restart: each failure is added to the state's count.
func CountFailures(state string, restart func() error) func() error {
	return func() error {
		err := restart()
		if err != nil {
			p := handoverFailuresPath(state)
			tmp := p + ".tmp"
			werr := os.WriteFile(tmp, []byte(fmt.Sprintln(HandoverFailures(state)+1)), 0o644)
			if werr == nil {
				werr = os.Rename(tmp, p)
			}
			err = errors.Join(err, werr)
		}
		return err
	}
}
