package cache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

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

// profileParallel bounds the boot profile's fetches in flight: with several in flight a far
// origin's round trip is paid once per profileParallel chunks, not once per chunk (at 20 ms
// and 64 KiB chunks, 8 in flight keep a 100 Mbit/s link busy); few, so that a read the guest
// waits on finds little of the prefetch ahead of it on the link.
const profileParallel = 8

// prefetcher is the state of the manager's boot-profile prefetches (of every image): the
// chunks they are fetching, and the images being prefetched (background fill waits for none).
// Lock order: the cache's foreground tracker, then mu.
type prefetcher struct {
	mu      sync.Mutex
	chunks  map[chunkstore.Digest]int
	running pendingSet[chunkstore.Digest, struct{}]
}

func (p *prefetcher) add(d chunkstore.Digest) {
	p.mu.Lock()
	if p.chunks == nil {
		p.chunks = make(map[chunkstore.Digest]int)
	}
	p.chunks[d]++
	p.mu.Unlock()
}

func (p *prefetcher) done(d chunkstore.Digest) {
	p.mu.Lock()
	if p.chunks[d]--; p.chunks[d] == 0 {
		delete(p.chunks, d)
	}
	p.mu.Unlock()
}

// fetching reports whether a prefetch is fetching chunk d.
func (p *prefetcher) fetching(d chunkstore.Digest) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.chunks[d] > 0
}

// prefetchProfile fetches the profiled chunks that are not local, starting them in profile
// order, profileParallel at a time, ahead of the guest. Guest reads go first: no prefetch is
// started while a guest read waits on a chunk the prefetch is not fetching (a guest that
// caught up with the prefetch, waiting on the prefetch's own fetches, does not stop it). Each
// chunk goes through the same flight as reads (one fetch per chunk) and is verified before
// anything uses it.
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
		if !m.c.haveLocal(ctx, d) {
			missing = append(missing, d)
		}
	}
	if len(missing) == 0 {
		return
	}
	m.pf.running.Store(im.digest, struct{}{})
	defer m.pf.running.Delete(im.digest)
	m.log.Info("prefetching boot profile", "image", im.digest.String(), "chunks", len(missing), "parallel", profileParallel)
	start := time.Now()
	var fetched, failed atomic.Int64
	var wg sync.WaitGroup
	slots := make(chan struct{}, profileParallel)
	for _, d := range missing {
		slots <- struct{}{}
		m.c.waitForegroundOnly(m.pf.fetching)
		if m.c.haveLocal(ctx, d) { // the guest read it meanwhile
			<-slots
			continue
		}
		m.pf.add(d)
		wg.Go(func() {
			defer func() {
				m.pf.done(d)
				<-slots
			}()
			if _, err := m.c.fetchForFill(ctx, d); err != nil {
				failed.Add(1)
				m.log.Warn("boot profile: chunk not prefetched; will be fetched on read", "image", im.digest.String(), "chunk", d.String(), "err", err)
				return
			}
			fetched.Add(1)
			m.profileChunks.Add(1)
		})
	}
	wg.Wait()
	m.log.Info("boot profile prefetched", "image", im.digest.String(), "chunks", fetched.Load(), "failed", failed.Load(), "seconds", time.Since(start).Seconds())
}

// imageUsed is called when an image is opened: a precache still waiting is a spawn's utime
// (nova opens the base to make the overlay) and stops; background fill fetches the rest of
// the image, once per image in a process (precache.go).
func (m *Manager) imageUsed(im *Image) {
	m.stopWaitingPrecache(im.digest)
	if m.cfg.FillRate <= 0 {
		return
	}
	m.startFill(im, fillSpec{reason: FillFirstUse, rate: m.cfg.FillRate, skip: firstUseOnce})
}
