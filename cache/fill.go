package cache

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/basefs/basefs/chunkstore"
)

// imageLoaded is called when an image becomes known to the cache (a lookup): a cold image
// with a boot profile gets its profiled chunks fetched first, in order; one without gets a
// profile recorded.
func (m *Manager) imageLoaded(im *Image) {
	n := len(im.m.Chunks)
	prof, err := readProfile(m.c.Local().Root(), im.digest, n)
	if chunkstore.IsNotFound(err) {
		for _, o := range m.c.Origins() {
			ps, ok := Profiles(o)
			if !ok {
				continue
			}
			if prof, err = ps.GetProfile(context.Background(), im.digest, n); err == nil {
				writeProfile(m.c.Local().Root(), im.digest, prof)
				m.log.Info("boot profile taken from origin", "image", im.digest.String(), "origin", o.String(), "chunks", len(prof))
				break
			}
		}
	}
	if err == nil && len(prof) > 0 {
		go m.prefetchProfile(im, prof)
		return
	}
	if m.cfg.ProfileWindow > 0 {
		im.rec.Store(newProfileRecorder(m.cfg.ProfileWindow, func(order []int) {
			im.rec.Store(nil)
			if len(order) == 0 {
				return
			}
			if err := writeProfile(m.c.Local().Root(), im.digest, order); err != nil {
				m.log.Error("cannot save boot profile", "image", im.digest.String(), "err", err)
				return
			}
			m.profilesRecorded.Add(1)
			m.log.Info("boot profile recorded", "image", im.digest.String(), "chunks", len(order), "window", m.cfg.ProfileWindow)
		}))
	}
}

// prefetchProfile fetches the profiled chunks that are not local, in profile order, a few at
// a time, ahead of the guest.
func (m *Manager) prefetchProfile(im *Image, prof []int) {
	ctx := context.Background()
	var missing []chunkstore.Digest
	seen := make(map[chunkstore.Digest]bool)
	for _, i := range prof {
		d := im.m.Chunks[i]
		if d.IsZero() || seen[d] {
			continue
		}
		seen[d] = true
		if ok, _ := m.c.Local().HasChunk(ctx, d); !ok {
			missing = append(missing, d)
		}
	}
	if len(missing) == 0 {
		return
	}
	m.log.Info("prefetching boot profile", "image", im.digest.String(), "chunks", len(missing))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(len(missing)) {
					return
				}
				if _, err := m.c.Chunk(ctx, missing[i]); err == nil {
					m.profileChunks.Add(1)
				}
			}
		})
	}
	wg.Wait()
}

// imageUsed is called when an image is opened: background fill fetches the rest of it.
func (m *Manager) imageUsed(im *Image) {
	if m.cfg.FillRate <= 0 {
		return
	}
	m.fillMu.Lock()
	queued := m.filled[im.digest]
	m.filled[im.digest] = true
	m.fillMu.Unlock()
	if queued {
		return
	}
	if im.src != nil {
		go im.src.Fill(context.Background(), m.cfg.FillRate, func(bytes int64, chunks int) {
			m.filledBytes.Add(bytes)
			m.filledChunks.Add(int64(chunks))
		})
		return
	}
	go m.fill(im)
}

// fill fetches every chunk of im not yet local at FillRate, pausing while guest reads wait
// on fetches (guest reads always go first).
func (m *Manager) fill(im *Image) {
	ctx := context.Background()
	lim := NewLimiter(m.cfg.FillRate)
	seen := make(map[chunkstore.Digest]bool)
	for i, d := range im.m.Chunks {
		if d.IsZero() || seen[d] {
			continue
		}
		seen[d] = true
		if ok, _ := m.c.Local().HasChunk(ctx, d); ok {
			continue
		}
		if m.c.isPending(d) {
			continue
		}
		m.c.WaitForeground()
		ch, err := m.c.fetchForFill(ctx, d)
		if err != nil {
			m.log.Warn("background fill: chunk not fetched; will be fetched on read", "image", im.digest.String(), "chunk", i, "err", err)
			continue
		}
		m.filledChunks.Add(1)
		m.filledBytes.Add(int64(len(ch.Data())))
		if lim.Wait(ctx, int64(len(ch.Data()))) != nil {
			return
		}
	}
	m.c.Flush()
	if p, t, _ := Presence(m.c.Local(), im.m); p == t {
		m.imagesComplete.Add(1)
		m.log.Info("background fill completed image", "image", im.digest.String())
	}
}
