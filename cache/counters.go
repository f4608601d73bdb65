package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// Every counter `basefs status` and /metrics show outlives the serving process: the cache's
// (reads, bytes, repairs, …), each origin's (fetches, bytes, misses, …), the write-back's,
// the manager's, and those a layer above registers (Cache.KeepCounter: the Glance layer's). They are kept in <state>/counters.json (ManagerConfig.Counters) as one flat
// object, name → value, saved every second while they change and at a handover, and loaded by
// the next process, so Prometheus sees one counter across restarts (a crash loses at most the
// last second's counts). Gauges (fetches in flight) and latency histograms are not kept.

// counterSaveEvery is how often changed counters are saved.
const counterSaveEvery = time.Second

// CountersPath is where a state directory keeps the counters.
func CountersPath(root string) string { return filepath.Join(root, "counters.json") }

// savedCounters are counters by name, as kept in the counters file.
type savedCounters map[string]int64

// namedCounter is one counter kept across processes under its name.
type namedCounter struct {
	name string
	v    *atomic.Int64
}

// readCounters returns the counters saved at path (none saved: none). A file written by an
// older version (the manager's counters only) has the same names and reads the same way.
func readCounters(path string) (savedCounters, error) {
	s := savedCounters{}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w (remove it to start the counters at zero)", path, err)
	}
	return s, nil
}

// kept lists every counter kept across processes: the manager's, under the names of their
// ManagerStats fields, then the cache's (Cache.keptCounters).
func (m *Manager) kept() []namedCounter {
	fields := m.counters()
	out := make([]namedCounter, 0, len(fields)+32)
	for _, f := range fields {
		out = append(out, namedCounter{f.name, f.v})
	}
	return append(out, m.c.keptCounters()...)
}

// loadCounters adds the counters saved at path to this process's (which count from zero,
// or from what they counted before the manager was made).
func (m *Manager) loadCounters(path string) error {
	s, err := readCounters(path)
	if err != nil {
		return err
	}
	for _, c := range m.kept() {
		c.v.Add(s[c.name])
	}
	m.base = s
	return nil
}

// RefreshCounters adds what the previous serving process counted after this one loaded the
// counters (it saved them when it handed over) and starts saving them every second until
// ctx ends. A serving process calls it once it has taken over.
func (m *Manager) RefreshCounters(ctx context.Context) error {
	if m.cfg.Counters == "" {
		return nil
	}
	s, err := readCounters(m.cfg.Counters)
	if err != nil {
		return err
	}
	for _, c := range m.kept() {
		c.v.Add(s[c.name] - m.base[c.name])
	}
	m.base = s
	go m.saveCounters(ctx)
	return nil
}

// snapshotCounters returns every kept counter's value by name.
func (m *Manager) snapshotCounters() savedCounters {
	kept := m.kept()
	s := make(savedCounters, len(kept))
	for _, c := range kept {
		s[c.name] = c.v.Load()
	}
	return s
}

// SaveCounters writes the counters to ManagerConfig.Counters (atomically; no-op without one).
func (m *Manager) SaveCounters() error {
	if m.cfg.Counters == "" {
		return nil
	}
	b, err := json.Marshal(m.snapshotCounters())
	if err != nil {
		return err
	}
	tmp := m.cfg.Counters + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, m.cfg.Counters)
}

// saveCounters saves the counters every counterSaveEvery while they change, until ctx ends.
func (m *Manager) saveCounters(ctx context.Context) {
	t := time.NewTicker(counterSaveEvery)
	defer t.Stop()
	last := m.snapshotCounters()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s := m.snapshotCounters(); !maps.Equal(s, last) {
			if err := m.SaveCounters(); err != nil {
				m.log.Warn("cannot save the manager's counters", "path", m.cfg.Counters, "err", err)
				continue
			}
			last = s
		}
	}
}

type counterField struct {
	name  string // its ManagerStats field's JSON name: its name in the counters file
	v     *atomic.Int64
	field func(*ManagerStats) *int64
}

// counters pairs each counter with its field in ManagerStats (Stats and loadCounters use it).
func (m *Manager) counters() []counterField {
	return []counterField{
		{"images_removed", &m.imagesRemoved, func(s *ManagerStats) *int64 { return &s.ImagesRemoved }},
		{"chunks_removed", &m.chunksRemoved, func(s *ManagerStats) *int64 { return &s.ChunksRemoved }},
		{"bytes_freed", &m.bytesFreed, func(s *ManagerStats) *int64 { return &s.BytesFreed }},
		{"evictions", &m.evictions, func(s *ManagerStats) *int64 { return &s.Evictions }},
		{"evicted_bytes", &m.evictedBytes, func(s *ManagerStats) *int64 { return &s.EvictedBytes }},
		{"chunks_scrubbed", &m.scrubbed, func(s *ManagerStats) *int64 { return &s.Scrubbed }},
		{"bytes_scrubbed", &m.scrubbedBytes, func(s *ManagerStats) *int64 { return &s.ScrubbedBytes }},
		{"scrub_corrupt", &m.scrubCorrupt, func(s *ManagerStats) *int64 { return &s.ScrubCorrupt }},
		{"filled_chunks", &m.filledChunks, func(s *ManagerStats) *int64 { return &s.FilledChunks }},
		{"filled_bytes", &m.filledBytes, func(s *ManagerStats) *int64 { return &s.FilledBytes }},
		{"images_completed_by_fill", &m.imagesComplete, func(s *ManagerStats) *int64 { return &s.ImagesComplete }},
		{"profiles_recorded", &m.profilesRecorded, func(s *ManagerStats) *int64 { return &s.ProfilesRecorded }},
		{"profile_chunks_prefetched", &m.profileChunks, func(s *ManagerStats) *int64 { return &s.ProfileChunks }},
		{"images_touched", &m.touched, func(s *ManagerStats) *int64 { return &s.Touched }},
		{"unlinks_refused_in_use", &m.removeRefused, func(s *ManagerStats) *int64 { return &s.RemoveRefused }},
		{"images_adopted", &m.adopted, func(s *ManagerStats) *int64 { return &s.Adopted }},
		{"precache_utimes", &m.precacheAsked, func(s *ManagerStats) *int64 { return &s.PrecacheAsked }},
		{"precache_in_use", &m.precacheInUse, func(s *ManagerStats) *int64 { return &s.PrecacheInUse }},
		{"prefetches", &m.prefetches, func(s *ManagerStats) *int64 { return &s.Prefetches }},
		{"precache_fills_started", &m.precacheStarted, func(s *ManagerStats) *int64 { return &s.PrecacheStarted }},
	}
}
