package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// The manager's counters outlive the serving process: they are kept in <state>/counters.json
// (ManagerConfig.Counters), saved every second while they change and at a handover, and
// loaded by the next process, so Prometheus sees one counter across restarts (a crash loses
// at most the last second's counts).

// counterSaveEvery is how often changed counters are saved.
const counterSaveEvery = time.Second

// CountersPath is where a state directory keeps the manager's counters.
func CountersPath(root string) string { return filepath.Join(root, "counters.json") }

// readCounters returns the counters saved at path (none saved: zero).
func readCounters(path string) (ManagerStats, error) {
	var s ManagerStats
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

// loadCounters starts the counters at those saved at path.
func (m *Manager) loadCounters(path string) error {
	s, err := readCounters(path)
	if err != nil {
		return err
	}
	for _, c := range m.counters() {
		c.v.Store(*c.field(&s))
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
	for _, c := range m.counters() {
		c.v.Add(*c.field(&s) - *c.field(&m.base))
	}
	m.base = s
	go m.saveCounters(ctx)
	return nil
}

// SaveCounters writes the counters to ManagerConfig.Counters (atomically; no-op without one).
func (m *Manager) SaveCounters() error {
	if m.cfg.Counters == "" {
		return nil
	}
	b, err := json.Marshal(m.Stats())
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
	last := m.Stats()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s := m.Stats(); s != last {
			if err := m.SaveCounters(); err != nil {
				m.log.Warn("cannot save the manager's counters", "path", m.cfg.Counters, "err", err)
				continue
			}
			last = s
		}
	}
}

type counterField struct {
	v     *atomic.Int64
	field func(*ManagerStats) *int64
}

// counters pairs each counter with its field in ManagerStats (Stats and loadCounters use it).
func (m *Manager) counters() []counterField {
	return []counterField{
		{&m.imagesRemoved, func(s *ManagerStats) *int64 { return &s.ImagesRemoved }},
		{&m.chunksRemoved, func(s *ManagerStats) *int64 { return &s.ChunksRemoved }},
		{&m.bytesFreed, func(s *ManagerStats) *int64 { return &s.BytesFreed }},
		{&m.evictions, func(s *ManagerStats) *int64 { return &s.Evictions }},
		{&m.evictedBytes, func(s *ManagerStats) *int64 { return &s.EvictedBytes }},
		{&m.scrubbed, func(s *ManagerStats) *int64 { return &s.Scrubbed }},
		{&m.scrubbedBytes, func(s *ManagerStats) *int64 { return &s.ScrubbedBytes }},
		{&m.scrubCorrupt, func(s *ManagerStats) *int64 { return &s.ScrubCorrupt }},
		{&m.filledChunks, func(s *ManagerStats) *int64 { return &s.FilledChunks }},
		{&m.filledBytes, func(s *ManagerStats) *int64 { return &s.FilledBytes }},
		{&m.imagesComplete, func(s *ManagerStats) *int64 { return &s.ImagesComplete }},
		{&m.profilesRecorded, func(s *ManagerStats) *int64 { return &s.ProfilesRecorded }},
		{&m.profileChunks, func(s *ManagerStats) *int64 { return &s.ProfileChunks }},
		{&m.touched, func(s *ManagerStats) *int64 { return &s.Touched }},
		{&m.removeRefused, func(s *ManagerStats) *int64 { return &s.RemoveRefused }},
		{&m.adopted, func(s *ManagerStats) *int64 { return &s.Adopted }},
	}
}
