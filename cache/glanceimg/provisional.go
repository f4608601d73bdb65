package glanceimg

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/chunkstore/tier"
)

// provisional is a raw Glance image without a manifest, read lazily by range: the cache's
// ChunkSource for it. No lock is held across I/O.
type provisional struct {
	l    *Layer
	c    *cache.Cache
	im   *cache.Image
	key  chunkstore.Digest // ProvisionalKey(meta.ID): the cache knows the image by it
	meta *glance.Image
	cs   int64
	n    int

	mu       sync.Mutex
	state    []uint8
	digests  []chunkstore.Digest
	flights  map[int]*rangeFlight
	known    int
	seqEnd   int // the chunk after the last guest fetch (sequential detection)
	window   int // chunks the next sequential fetch asks for
	bad      error
	final    chunkstore.Digest
	finished bool // completion started
	done     chan struct{}
	retry    retryState // completion attempts that failed for a transient cause

	ctx    context.Context // ends when the image is removed or the layer closed
	cancel context.CancelFunc
	wake   chan struct{} // a Glance read succeeded: a completion waiting to retry tries now
}

// retryState is what status shows of a completion that waits to try again.
type retryState struct {
	attempts int
	lastErr  string
	nextTry  time.Time
}

var _ cache.ChunkSource = (*provisional)(nil)

const (
	chunkUnknown uint8 = iota
	chunkKnown
	chunkHole
)

// reader says who waits for a range: a guest read (it grows a sequential window and counts
// as foreground) or the background fill.
type reader uint8

const (
	guestRead reader = iota
	backgroundFill
)

type rangeFlight struct {
	done chan struct{}
	err  error
}

func (l *Layer) newProvisional(meta *glance.Image) (*cache.Image, error) {
	if _, err := glance.NewVerifier(meta); err != nil {
		return nil, err // no hash to check the whole against: it could never get a digest
	}
	if meta.Size > chunkstore.MaxImageSize {
		return nil, fmt.Errorf("image %s: size %d is larger than basefs supports", meta.ID, meta.Size)
	}
	cs := int64(chunkstore.DefaultChunkSize)
	n := int(chunkstore.NumChunks(meta.Size, cs))
	p := &provisional{
		l: l, c: l.c, key: ProvisionalKey(meta.ID), meta: meta, cs: cs, n: n,
		state: make([]uint8, n), digests: make([]chunkstore.Digest, n),
		flights: make(map[int]*rangeFlight), window: 1, seqEnd: -1, done: make(chan struct{}),
		wake: make(chan struct{}, 1),
	}
	p.ctx, p.cancel = context.WithCancel(l.ctx)
	if err := l.names.Write(meta.ID, chunkstore.Digest{}); err != nil {
		return nil, fmt.Errorf("image %s: record nova's name: %w", meta.ID, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if old := l.prov[meta.ID]; old != nil {
		p.cancel()
		return old.im, nil
	}
	p.im = l.c.AddSource(p.key, meta.Size, cs, meta.Source(), p)
	l.prov[meta.ID] = p
	l.log.Info("Glance raw image served lazily by range until complete", "glance_id", meta.ID, "size", meta.Size, "nova_name", glanceref.NovaName(meta.ID))
	return p.im, nil
}

func (p *provisional) finalDigest() chunkstore.Digest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.final
}

// Result is cache.ChunkSource's: the digest the completed image got, or why it is bad.
func (p *provisional) Result() (chunkstore.Digest, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.final, p.bad
}

// Done is closed when completion ran.
func (p *provisional) Done() <-chan struct{} { return p.done }

// UsePath is the image's alias file: its mtime is the image's recorded use.
func (p *provisional) UsePath() string { return p.l.names.Path(p.meta.ID) }

// Removed forgets the lazy state (the cache removed the image) and stops its completion.
func (p *provisional) Removed() {
	p.cancel()
	p.l.mu.Lock()
	if p.l.prov[p.meta.ID] == p {
		delete(p.l.prov, p.meta.ID)
	}
	p.l.mu.Unlock()
}

// Known returns the digests of the chunks seen and how many are unknown.
func (p *provisional) Known() ([]chunkstore.Digest, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var known []chunkstore.Digest
	unknown := 0
	for i, st := range p.state {
		switch st {
		case chunkKnown:
			known = append(known, p.digests[i])
		case chunkUnknown:
			unknown++
		}
	}
	return known, unknown
}

func (p *provisional) chunkLen(i int) int64 { return min(p.cs, p.meta.Size-int64(i)*p.cs) }

// Chunk is cache.ChunkSource's: chunk i for a guest read, with the chunks up to span.
func (p *provisional) Chunk(ctx context.Context, i, span int) ([]byte, error) {
	return p.chunk(ctx, i, span, guestRead)
}

// chunk returns chunk i's bytes (nil for an all-zero chunk). An unknown chunk is fetched with
// the chunks after it up to span (or, for guest reads that continue the previous fetch, a
// window growing to 16 MiB), in one range request; concurrent readers wait on that fetch.
// A bad image's chunks fail with its error.
func (p *provisional) chunk(ctx context.Context, i, span int, who reader) ([]byte, error) {
	for {
		p.mu.Lock()
		if p.bad != nil {
			p.mu.Unlock()
			return nil, p.bad
		}
		switch p.state[i] {
		case chunkHole:
			p.mu.Unlock()
			return nil, nil
		case chunkKnown:
			d := p.digests[i]
			p.mu.Unlock()
			return p.knownChunk(ctx, i, d)
		}
		if fl := p.flights[i]; fl != nil {
			p.mu.Unlock()
			select {
			case <-fl.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if fl.err != nil {
				return nil, fl.err
			}
			continue
		}
		maxChunks := int(max(1, maxRangeBytes/p.cs))
		want := span
		guest := who == guestRead
		if guest {
			if i == p.seqEnd {
				p.window = min(p.window*2, maxChunks)
			} else {
				p.window = 1
			}
			want = max(span, p.window)
		}
		want = min(want, maxChunks)
		j := i + 1
		for j < p.n && j < i+want && p.state[j] == chunkUnknown && p.flights[j] == nil {
			j++
		}
		if guest {
			p.seqEnd = j
		}
		fl := &rangeFlight{done: make(chan struct{})}
		for k := i; k < j; k++ {
			p.flights[k] = fl
		}
		p.mu.Unlock()

		leave := func() {}
		if guest {
			leave = p.c.Foreground()
		}
		data, err := p.fetch(context.WithoutCancel(ctx), i, j)
		leave()
		fl.err = err
		p.mu.Lock()
		for k := i; k < j; k++ {
			delete(p.flights, k)
		}
		complete := err == nil && p.known == p.n && !p.finished
		if complete {
			p.finished = true
		}
		p.mu.Unlock()
		close(fl.done)
		if complete {
			go p.complete()
		}
		if err != nil {
			return nil, err
		}
		return data, nil
	}
}

// knownChunk reads a chunk whose digest was kept: verified from memory or local state (or any
// origin that has it); if that fails, fetched from Glance again and verified against the digest.
func (p *provisional) knownChunk(ctx context.Context, i int, d chunkstore.Digest) ([]byte, error) {
	ch, err := p.c.Chunk(ctx, d)
	if err == nil {
		return ch.Data(), nil
	}
	buf := make([]byte, p.chunkLen(i))
	if rerr := p.l.origin.Client().ReadRange(ctx, p.meta.ID, int64(i)*p.cs, buf); rerr != nil {
		p.count(func(o *tier.Counters) { o.Errors.Add(1) })
		return nil, fmt.Errorf("%v; and from Glance: %w", err, rerr)
	}
	ch, verr := chunkstore.VerifyChunk(d, buf)
	if verr != nil {
		p.count(func(o *tier.Counters) { o.Corrupt.Add(1) })
		p.l.log.Error("Glance served bytes that differ from those first read", "glance_id", p.meta.ID, "chunk", i, "err", verr)
		return nil, verr
	}
	p.count(func(o *tier.Counters) { o.Fetches.Add(1); o.Bytes.Add(int64(len(buf))) })
	p.kick()
	p.c.Admit(ch, p.l.origin)
	return ch.Data(), nil
}

// count applies f to the Glance origin's counters.
func (p *provisional) count(f func(*tier.Counters)) {
	if o := p.l.counters(); o != nil {
		f(o)
	}
}

// fetch reads chunks [i, j) with one range request, hashes each as it arrives, keeps its
// digest and stores it; it returns chunk i's bytes (nil for zeros).
func (p *provisional) fetch(ctx context.Context, i, j int) ([]byte, error) {
	off := int64(i) * p.cs
	end := min(int64(j)*p.cs, p.meta.Size)
	buf := make([]byte, end-off)
	done := p.c.StartFetch()
	err := p.l.origin.Client().ReadRange(ctx, p.meta.ID, off, buf)
	done(err)
	if err != nil {
		p.count(func(o *tier.Counters) { o.Errors.Add(1) })
		p.l.log.Warn("Glance range read failed", "glance_id", p.meta.ID, "offset", off, "bytes", len(buf), "err", err)
		return nil, err
	}
	p.count(func(o *tier.Counters) { o.Fetches.Add(int64(j - i)); o.Bytes.Add(int64(len(buf))) })
	p.kick()
	var first []byte
	for k := i; k < j; k++ {
		b := buf[int64(k-i)*p.cs : int64(k-i)*p.cs+p.chunkLen(k)]
		state, d := chunkHole, chunkstore.Digest{}
		if !chunkstore.IsZeroes(b) {
			ch := chunkstore.NewChunk(b)
			d, state = ch.Digest(), chunkKnown
			p.c.Admit(ch, p.l.origin)
		}
		if k == i && state == chunkKnown {
			first = b
		}
		p.mu.Lock()
		if p.state[k] == chunkUnknown {
			p.state[k], p.digests[k] = state, d
			p.known++
		}
		p.mu.Unlock()
	}
	return first, nil
}

// Fill fetches every chunk not yet seen, in 16 MiB ranges, at most rate bytes a second and
// yielding to guest reads; the last fetch triggers completion.
func (p *provisional) Fill(ctx context.Context, rate int64, progress func(bytes int64, chunks int)) {
	lim := cache.NewLimiter(rate)
	maxChunks := int(max(1, maxRangeBytes/p.cs))
	for i := 0; i < p.n; i++ {
		p.mu.Lock()
		skip := p.state[i] != chunkUnknown || p.flights[i] != nil
		bad := p.bad != nil
		p.mu.Unlock()
		if bad {
			return
		}
		if skip {
			continue
		}
		p.c.WaitForeground()
		if _, err := p.chunk(ctx, i, maxChunks, backgroundFill); err != nil {
			p.l.log.Warn("background fill of Glance image: range not fetched; will be fetched on read", "glance_id", p.meta.ID, "chunk", i, "err", err)
			continue
		}
		var got int64
		p.mu.Lock()
		for k := i; k < min(p.n, i+maxChunks); k++ {
			if p.state[k] != chunkUnknown {
				got += p.chunkLen(k)
			}
		}
		p.mu.Unlock()
		progress(got, min(p.n, i+maxChunks)-i)
		if lim.Wait(ctx, got) != nil {
			return
		}
		i += maxChunks - 1
	}
}

// kick tells a completion waiting to retry that Glance answered (it tries again at once).
func (p *provisional) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Completion retries: the first after retryBase, doubling up to retryMax, for ever.
const (
	retryBase = time.Second
	retryMax  = time.Minute
)

// complete runs once every chunk has been seen: it hashes the whole image (from the verified
// chunks) against Glance's os_hash_value and checksum; on a match it writes the manifest (after
// every chunk is durable) and nova's name → digest. Only proven corruption — the data does not
// match Glance's hash, or Glance served bytes other than those first read — marks the image
// bad. Any other failure (Glance down, a full disk) is retried for ever with capped exponential
// backoff, at once when a Glance read succeeds again, until the image is removed or the layer
// closed; reads go on meanwhile, and status shows the attempts, the last error and the next try.
func (p *provisional) complete() {
	defer close(p.done)
	for attempt := 1; ; attempt++ {
		err := p.completeOnce()
		if err == nil {
			p.mu.Lock()
			p.retry = retryState{}
			p.mu.Unlock()
			return
		}
		if errors.Is(err, glance.ErrHashMismatch) || chunkstore.IsCorrupt(err) {
			p.count(func(o *tier.Counters) { o.Corrupt.Add(1) })
			p.mu.Lock()
			p.bad = fmt.Errorf("%w: Glance image %s: %v", glanceref.ErrBadImage, p.meta.ID, err)
			p.mu.Unlock()
			p.l.log.Error("Glance image failed its whole-image check: marked bad, reads fail", "glance_id", p.meta.ID, "err", err)
			return
		}
		if p.ctx.Err() != nil {
			return
		}
		wait := retryMax
		if attempt < 7 {
			wait = min(retryMax, retryBase<<(attempt-1))
		}
		p.mu.Lock()
		p.retry = retryState{attempts: attempt, lastErr: err.Error(), nextTry: time.Now().Add(wait)}
		p.mu.Unlock()
		p.l.retries.Add(1)
		p.l.log.Warn("Glance image: whole-image check could not finish; the image stays readable and completion is tried again", "glance_id", p.meta.ID, "attempt", attempt, "retry_in", wait, "err", err)
		select { // a Glance read of the attempt itself is no sign that Glance came back
		case <-p.wake:
		default:
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-p.wake:
		case <-p.ctx.Done():
			t.Stop()
			return
		}
		t.Stop()
	}
}

// completion returns the image's pending completion retries, if any.
func (p *provisional) completion() (glanceref.Completion, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.retry
	if r.attempts == 0 || !p.final.IsZero() || p.bad != nil {
		return glanceref.Completion{}, false
	}
	return glanceref.Completion{GlanceID: p.meta.ID, Attempts: r.attempts, LastError: r.lastErr, NextTry: r.nextTry}, true
}

func (p *provisional) completeOnce() error {
	ctx := p.ctx
	c := p.c
	v, err := glance.NewVerifier(p.meta)
	if err != nil {
		return err
	}
	zero := make([]byte, p.cs)
	for i := 0; i < p.n; i++ {
		p.mu.Lock()
		st, d := p.state[i], p.digests[i]
		p.mu.Unlock()
		if st == chunkHole {
			v.Write(zero[:p.chunkLen(i)])
			continue
		}
		data, err := p.knownChunk(ctx, i, d)
		if err != nil {
			return err
		}
		v.Write(data)
	}
	if err := v.Check(); err != nil {
		return err
	}
	// A writer of references (chunkstore/local refs.go) while the manifest and its name are
	// written. A chunk evicted before that is fetched again from Glance by range when read
	// (the Glance origin serves the manifest's chunks), so the hash above need not hold it.
	unlock, err := c.Local().ShareRefs(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	c.Flush()
	p.mu.Lock()
	m := &chunkstore.Manifest{Size: p.meta.Size, ChunkSize: p.cs, Chunks: append([]chunkstore.Digest(nil), p.digests...), Source: p.meta.Source()}
	p.mu.Unlock()
	d, err := c.Local().PutManifest(ctx, m)
	if err == nil {
		err = p.l.names.Write(p.meta.ID, d)
	}
	if err != nil {
		return fmt.Errorf("record the completed image: %w", err)
	}
	p.l.origin.Register(m)
	p.mu.Lock()
	p.final = d
	p.mu.Unlock()
	p.l.log.Info("Glance image complete and verified against os_hash_value: digest assigned", "glance_id", p.meta.ID, "image", d.String())
	if p.meta.Manifest() != d.String() {
		// Chunks, then the manifest, then basefs_manifest in Glance: the next host trusts it.
		c.WriteBackImage(d, m, p.l.recordManifest(p.meta, d))
	}
	return nil
}
