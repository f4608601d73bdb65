package cache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/basefs/basefs/cache/report"
	"github.com/basefs/basefs/chunkstore"
)

// Fills: background fetches of a whole image. Three things start one — an image's first use
// (FillRate), nova's precache (a utime to the current time of an image no instance uses:
// what nova's cache_image does to a base it finds present) and `basefs prefetch`
// (PrefetchRate) — and all three run the same loop: chunk after chunk at a bounded rate,
// waiting for boot-profile prefetches and for every fetch a guest read waits on (guest reads
// always go first). One fill per image at a time: a request while one runs joins it. A fill
// lives in its serving process: a restart ends it (what it fetched stays local), and the
// next precache or prefetch of the image starts it again, fetching only what is missing.

// Why a fill runs (FillInfo.Reason).
const (
	FillFirstUse = "first use" // the image was opened (FillRate)
	FillPrecache = "precache"  // nova's utime to now of an unused image (PrefetchRate)
	FillPrefetch = "prefetch"  // basefs prefetch (PrefetchRate)
)

// ErrPrefetchOff is wrapped by a prefetch asked of a manager whose PrefetchRate is 0.
var ErrPrefetchOff = errors.New("prefetch is off (--prefetch-rate 0)")

// FillInfo is one fill's progress (basefs status).
type FillInfo = report.FillInfo

// fillJob is a fill: its progress, how to stop it, and a channel closed when it ends.
type fillJob struct {
	mu     sync.Mutex
	info   FillInfo
	ended  time.Time
	cancel context.CancelFunc
	done   chan struct{}
}

func (j *fillJob) snapshot() FillInfo {
	j.mu.Lock()
	defer j.mu.Unlock()
	i := j.info
	end := j.ended
	if i.Running {
		end = time.Now()
	}
	i.Seconds = end.Sub(i.Started).Seconds()
	return i
}

func (j *fillJob) running() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.info.Running
}

func (j *fillJob) update(f func(*FillInfo)) {
	j.mu.Lock()
	f(&j.info)
	j.mu.Unlock()
}

// Fills returns the fills of this process, running and ended, by image.
func (m *Manager) Fills() []FillInfo {
	m.fillMu.Lock()
	jobs := make([]*fillJob, 0, len(m.fills))
	for _, j := range m.fills {
		jobs = append(jobs, j)
	}
	m.fillMu.Unlock()
	out := make([]FillInfo, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, j.snapshot())
	}
	slices.SortFunc(out, func(a, b FillInfo) int { return strings.Compare(a.Image.String(), b.Image.String()) })
	return out
}

// Precache is nova's utime to the current time of image d (what nova's cache_image, and so
// `openstack aggregate cache image`, does to a base it finds present): unless an instance or
// an open file uses the image — nova's image cache manager utimes the bases in use — or a fill
// of it runs, the whole image is fetched in the background at PrefetchRate. nova's spawn also
// utimes the base, just before it opens it to create the instance's overlay: so the fill waits
// PrecacheDelay first, is stopped if the image is opened meanwhile, and starts only if the
// image is still unused then (a spawn's image is filled after its first use, at FillRate, if
// at all). It reports whether a precache was
// scheduled, and returns before any chunk is fetched.
func (m *Manager) Precache(ctx context.Context, d chunkstore.Digest) (bool, error) {
	if m.cfg.PrefetchRate <= 0 {
		return false, nil // only the use is recorded
	}
	m.precacheAsked.Add(1)
	im := m.c.loaded(d)
	if im == nil {
		return false, fmt.Errorf("precache image %s: not loaded", d.Short())
	}
	if j := m.fillOf(d); j != nil && j.running() {
		return false, nil
	}
	who, err := m.usedBy(ctx, im)
	if err != nil {
		return false, fmt.Errorf("precache image %s: %w", d.Short(), err)
	}
	if who != "" {
		m.precacheInUse.Add(1)
		m.log.Info("utime of an image in use: no precache", "image", d.String(), "users", who)
		return false, nil
	}
	_, started := m.startFill(im, fillSpec{reason: FillPrecache, rate: m.cfg.PrefetchRate, skip: whileRunning,
		settle: func(ctx context.Context) string {
			sleep(ctx, m.cfg.PrecacheDelay)
			if ctx.Err() != nil {
				return ""
			}
			who, err := m.usedBy(ctx, im)
			switch {
			case err != nil:
				return "in-use scan failed: " + err.Error()
			case who != "":
				m.precacheInUse.Add(1)
				return "in use by " + who + " (a spawn's utime)"
			}
			return ""
		}})
	return started, nil
}

// usedBy says who uses im ("": nobody). A running guest holds its base open, so an open image
// needs no scan; the scan reads every instance disk's header.
func (m *Manager) usedBy(ctx context.Context, im *Image) (string, error) {
	if im.Open() {
		return "open file", nil
	}
	users, err := m.inUse(ctx)
	if err != nil {
		return "", err
	}
	return strings.Join(users[im.digest], ", "), nil
}

// Prefetch fetches the whole of image d in the background at PrefetchRate (`basefs
// prefetch`), in use or not; if a fill of it runs already, that one is its fill. It returns
// the fill's progress now, and a channel closed when the fill ends.
func (m *Manager) Prefetch(ctx context.Context, d chunkstore.Digest) (FillInfo, <-chan struct{}, error) {
	if m.cfg.PrefetchRate <= 0 {
		return FillInfo{}, nil, fmt.Errorf("prefetch image %s: %w", d.Short(), ErrPrefetchOff)
	}
	im, err := m.c.Image(ctx, d)
	if err != nil {
		return FillInfo{}, nil, err
	}
	m.prefetches.Add(1)
	j, _ := m.startFill(im, fillSpec{reason: FillPrefetch, rate: m.cfg.PrefetchRate, skip: whileFetching})
	return j.snapshot(), j.done, nil
}

// Fill returns the progress of image d's last fill in this process and a channel closed when
// it ends (false: none ran).
func (m *Manager) Fill(d chunkstore.Digest) (FillInfo, <-chan struct{}, bool) {
	j := m.fillOf(d)
	if j == nil {
		return FillInfo{}, nil, false
	}
	return j.snapshot(), j.done, true
}

func (m *Manager) fillOf(d chunkstore.Digest) *fillJob {
	m.fillMu.Lock()
	defer m.fillMu.Unlock()
	return m.fills[d]
}

// Whether the image's last fill (nil: none) keeps a new one from starting (startFill). A
// precache still waiting out PrecacheDelay gives way to a prefetch and to a first use.
func whileRunning(j *fillJob) bool { return j != nil && j.running() }

func whileFetching(j *fillJob) bool {
	if j == nil {
		return false
	}
	i := j.snapshot()
	return i.Running && !i.Waiting
}

func firstUseOnce(j *fillJob) bool {
	return whileFetching(j) || j != nil && j.snapshot().Reason == FillFirstUse
}

// fillSpec says what fill to start and when not to.
type fillSpec struct {
	reason string
	rate   int64
	// skip says whether the image's last fill (nil: none) keeps this one from starting.
	skip func(*fillJob) bool
	// settle, when set, runs first (the fill is waiting meanwhile); a reason it returns stops
	// the fill before it fetches anything.
	settle func(ctx context.Context) string
}

// startFill starts a fill of im unless spec.skip says not to; it returns the fill that is the
// image's now and whether it is a new one.
func (m *Manager) startFill(im *Image, spec fillSpec) (*fillJob, bool) {
	m.fillMu.Lock()
	defer m.fillMu.Unlock()
	old := m.fills[im.digest]
	if spec.skip(old) {
		return old, false
	}
	if old != nil && old.running() { // a precache waiting: this fill takes over
		old.update(func(i *FillInfo) { i.Stopped = "a " + spec.reason + " fill took over" })
		old.cancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	j := &fillJob{cancel: cancel, done: make(chan struct{}),
		info: FillInfo{Image: im.digest, Reason: spec.reason, Rate: spec.rate, ToFetch: -1, Running: true,
			Waiting: spec.settle != nil, Started: time.Now()}}
	m.fills[im.digest] = j
	m.fillsRunning.Add(1)
	if spec.reason != FillFirstUse {
		m.precacheStarted.Add(1)
	}
	m.log.Info("background fill started", "image", im.digest.String(), "reason", spec.reason, "rate", spec.rate, "waiting", spec.settle != nil)
	go func() {
		defer close(j.done)
		defer m.fillsRunning.Add(-1)
		defer cancel()
		if spec.settle != nil {
			why := spec.settle(ctx)
			j.update(func(i *FillInfo) {
				i.Waiting = false
				if why != "" {
					i.Stopped = why
				}
			})
		}
		if j.snapshot().Stopped == "" && ctx.Err() == nil {
			m.runFill(ctx, im, j, spec.rate)
		}
		j.mu.Lock()
		j.info.Running = false
		j.ended = time.Now()
		if ctx.Err() != nil && j.info.Stopped == "" {
			j.info.Stopped = "stopped"
		}
		info := j.info
		j.mu.Unlock()
		m.log.Info("background fill ended", "image", im.digest.String(), "reason", spec.reason, "chunks", info.Chunks,
			"bytes", info.Bytes, "failed", info.Failed, "complete", info.Complete, "stopped", info.Stopped,
			"seconds", j.ended.Sub(info.Started).Seconds())
	}()
	return j, true
}

// stopWaitingPrecache stops image d's precache if it still waits out PrecacheDelay: the image
// was opened since nova's utime, so the utime was a spawn's.
func (m *Manager) stopWaitingPrecache(d chunkstore.Digest) {
	j := m.fillOf(d)
	if j == nil {
		return
	}
	if i := j.snapshot(); !i.Waiting || i.Reason != FillPrecache {
		return
	}
	j.update(func(i *FillInfo) { i.Stopped = "opened during the delay (a spawn's utime)" })
	j.cancel()
	m.precacheInUse.Add(1)
}

// stopFill stops image d's fill, if one runs (the image is being removed), and forgets it.
func (m *Manager) stopFill(d chunkstore.Digest, why string) {
	m.fillMu.Lock()
	j := m.fills[d]
	delete(m.fills, d)
	m.fillMu.Unlock()
	if j != nil && j.running() {
		j.update(func(i *FillInfo) { i.Stopped = why })
		j.cancel()
	}
}

// runFill fetches every chunk of im that is not local at rate bytes a second, waiting for
// boot-profile prefetches and guest reads, until done or ctx ends.
func (m *Manager) runFill(ctx context.Context, im *Image, j *fillJob, rate int64) {
	progress := func(bytes int64, chunks int) {
		m.filledBytes.Add(bytes)
		m.filledChunks.Add(int64(chunks))
		j.update(func(i *FillInfo) { i.Bytes += bytes; i.Chunks += int64(chunks) })
	}
	if im.src != nil {
		im.src.Fill(ctx, rate, progress)
		if _, unknown := im.src.Known(); unknown > 0 || ctx.Err() != nil {
			return
		}
		select { // the whole-image check runs after the last chunk arrived
		case <-im.src.Done():
		case <-ctx.Done():
			return
		}
		d, err := im.src.Result()
		if err == nil && !d.IsZero() {
			j.update(func(i *FillInfo) { i.Complete = true })
			m.imagesComplete.Add(1)
		}
		return
	}
	var missing []int
	seen := make(map[chunkstore.Digest]bool)
	for i, d := range im.m.Chunks {
		if d.IsZero() || seen[d] {
			continue
		}
		seen[d] = true
		if !m.c.haveLocal(ctx, d) {
			missing = append(missing, i)
		}
	}
	j.update(func(i *FillInfo) { i.ToFetch = int64(len(missing)) })
	lim := NewLimiter(rate)
	for _, i := range missing {
		if ctx.Err() != nil {
			return
		}
		d := im.m.Chunks[i]
		m.pf.running.Wait() // boot profiles go first
		m.c.WaitForeground()
		if m.c.haveLocal(ctx, d) { // a guest read it meanwhile
			continue
		}
		// The flight is shared with guest reads: it must not end with this fill.
		ch, err := m.c.fetchForFill(context.WithoutCancel(ctx), d)
		if err != nil {
			j.update(func(i *FillInfo) { i.Failed++ })
			m.log.Warn("background fill: chunk not fetched; will be fetched on read", "image", im.digest.String(), "chunk", i, "err", err)
			continue
		}
		progress(int64(len(ch.Data())), 1)
		if lim.Wait(ctx, int64(len(ch.Data()))) != nil {
			return
		}
	}
	m.c.Flush()
	if p, t, _ := Presence(m.c.Local(), im.m); p == t {
		j.update(func(i *FillInfo) { i.Complete = true })
		m.imagesComplete.Add(1)
		m.log.Info("background fill completed image", "image", im.digest.String())
	}
}
