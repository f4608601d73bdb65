package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance"
	"github.com/basefs/basefs/chunkstore/tier"
)

// provisional is a raw Glance image without a manifest, read lazily by range. Lock order:
// Cache.mu, then provisional.mu; no lock is held across I/O.
type provisional struct {
	c    *Cache
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
	finished bool // completion ran (successfully or not)
	done     chan struct{}
}

type rangeFlight struct {
	done chan struct{}
	err  error
}

func (c *Cache) newProvisional(meta *glance.Image) (*Image, error) {
	if _, err := glance.NewVerifier(meta); err != nil {
		return nil, err // no hash to check the whole against: it could never get a digest
	}
	if meta.Size > chunkstore.MaxImageSize {
		return nil, fmt.Errorf("image %s: size %d is larger than basefs supports", meta.ID, meta.Size)
	}
	cs := int64(chunkstore.DefaultChunkSize)
	n := int(chunkstore.NumChunks(meta.Size, cs))
	p := &provisional{
		c: c, meta: meta, cs: cs, n: n,
		state: make([]uint8, n), digests: make([]chunkstore.Digest, n),
		flights: make(map[int]*rangeFlight), window: 1, seqEnd: -1, done: make(chan struct{}),
	}
	key := ProvisionalKey(meta.ID)
	im := &Image{c: c, digest: key, m: &chunkstore.Manifest{Size: meta.Size, ChunkSize: cs, Source: meta.Source()}, prov: p}
	im.lastUse.Store(time.Now().UnixNano())
	if err := c.writeAlias(meta.ID, chunkstore.Digest{}); err != nil {
		return nil, fmt.Errorf("image %s: record nova's name: %w", meta.ID, err)
	}
	c.mu.Lock()
	if old := c.prov[meta.ID]; old != nil {
		im = old
	} else {
		c.prov[meta.ID] = im
		c.images[key] = im
	}
	c.mu.Unlock()
	c.log.Info("Glance raw image served lazily by range until complete", "glance_id", meta.ID, "size", meta.Size, "nova_name", glance.NovaName(meta.ID))
	return im, nil
}

func (p *provisional) finalDigest() chunkstore.Digest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.final
}

func (p *provisional) badErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bad
}

// Complete waits until the provisional image's completion ran (for tests and tools): the
// final digest, or the error that marked it bad.
func (im *Image) Complete(ctx context.Context) (chunkstore.Digest, error) {
	p := im.prov
	if p == nil {
		return im.digest, nil
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return chunkstore.Digest{}, ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.final, p.bad
}

// Provisional reports whether the image is a Glance image still without a digest of its own
// (its Digest is then its ProvisionalKey).
func (im *Image) Provisional() bool { return im.prov != nil && im.prov.finalDigest().IsZero() }

// GlanceID returns the Glance image id the image came from, if any.
func (im *Image) GlanceID() string { return im.m.Source.GlanceID }

func (p *provisional) chunkLen(i int) int64 { return min(p.cs, p.meta.Size-int64(i)*p.cs) }

// readAt serves a provisional image's bytes: chunks already seen from local state or memory,
// verified against the digest kept when they arrived; missing ones fetched by range.
func (p *provisional) readAt(ctx context.Context, im *Image, dst []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("image %s: negative offset %d", p.meta.ID, off)
	}
	if off >= p.meta.Size {
		return 0, nil
	}
	dst = dst[:min(int64(len(dst)), p.meta.Size-off)]
	st := p.c.stats
	st.reads.Add(1)
	im.lastUse.Store(time.Now().UnixNano())
	n := 0
	for n < len(dst) {
		pos := off + int64(n)
		i := int(pos / p.cs)
		within := pos - int64(i)*p.cs
		want := min(int64(len(dst)-n), p.chunkLen(i)-within)
		span := int((off+int64(len(dst))-1-int64(i)*p.cs)/p.cs) + 1
		data, err := p.chunk(ctx, i, span, true)
		if err != nil {
			st.readErrors.Add(1)
			return n, fmt.Errorf("Glance image %s, chunk %d at offset %d: %w", p.meta.ID, i, int64(i)*p.cs, err)
		}
		if data == nil {
			clear(dst[n : n+int(want)])
			st.holeBytes.Add(want)
		} else {
			copy(dst[n:n+int(want)], data[within:within+want])
		}
		n += int(want)
	}
	st.bytesRead.Add(int64(n))
	return n, nil
}

// chunk returns chunk i's bytes (nil for an all-zero chunk). An unknown chunk is fetched with
// the chunks after it up to span (or, for guest reads that continue the previous fetch, a
// window growing to 16 MiB), in one range request; concurrent readers wait on that fetch.
func (p *provisional) chunk(ctx context.Context, i, span int, guest bool) ([]byte, error) {
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

		if guest {
			p.c.fg.enter()
		}
		data, err := p.fetch(context.WithoutCancel(ctx), i, j)
		if guest {
			p.c.fg.leave()
		}
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
	if rerr := p.c.glance.Client().ReadRange(ctx, p.meta.ID, int64(i)*p.cs, buf); rerr != nil {
		p.countErr()
		return nil, fmt.Errorf("%v; and from Glance: %w", err, rerr)
	}
	ch, verr := chunkstore.VerifyChunk(d, buf)
	if verr != nil {
		p.c.countGlance(func(o *tier.Counters) { o.Corrupt.Add(1) })
		p.c.log.Error("Glance served bytes that differ from those first read", "glance_id", p.meta.ID, "chunk", i, "err", verr)
		return nil, verr
	}
	p.c.countGlance(func(o *tier.Counters) { o.Fetches.Add(1); o.Bytes.Add(int64(len(buf))) })
	p.c.keep(ch)
	return ch.Data(), nil
}

func (p *provisional) countErr() { p.c.countGlance(func(o *tier.Counters) { o.Errors.Add(1) }) }

// fetch reads chunks [i, j) with one range request, hashes each as it arrives, keeps its
// digest and stores it; it returns chunk i's bytes (nil for zeros).
func (p *provisional) fetch(ctx context.Context, i, j int) ([]byte, error) {
	off := int64(i) * p.cs
	end := min(int64(j)*p.cs, p.meta.Size)
	buf := make([]byte, end-off)
	start := time.Now()
	p.c.stats.inFlight.Add(1)
	err := p.c.glance.Client().ReadRange(ctx, p.meta.ID, off, buf)
	p.c.stats.inFlight.Add(-1)
	if err != nil {
		p.countErr()
		p.c.log.Warn("Glance range read failed", "glance_id", p.meta.ID, "offset", off, "bytes", len(buf), "err", err)
		return nil, err
	}
	p.c.stats.observeFetch(time.Since(start))
	p.c.countGlance(func(o *tier.Counters) { o.Fetches.Add(int64(j - i)); o.Bytes.Add(int64(len(buf))) })
	var first []byte
	for k := i; k < j; k++ {
		b := buf[int64(k-i)*p.cs : int64(k-i)*p.cs+p.chunkLen(k)]
		state, d := chunkHole, chunkstore.Digest{}
		if !chunkstore.IsZeroes(b) {
			ch := chunkstore.NewChunk(b)
			d, state = ch.Digest(), chunkKnown
			p.c.keep(ch)
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

// keep puts a chunk of a provisional image (read from Glance) in memory, queues it for the
// local state and offers it to the write-back tier.
func (c *Cache) keep(ch *chunkstore.Chunk) {
	c.mem.add(ch.Digest(), ch)
	c.wb.offerChunk(c.glanceIdx, ch) // never blocks; the tier is asked even if the chunk is local
	if ok, _ := c.local.HasChunk(context.Background(), ch.Digest()); ok {
		return
	}
	c.pending.Store(ch.Digest(), ch)
	c.enqueueWrite(ch)
}

// fill fetches every chunk not yet seen, in 16 MiB ranges, at most rate bytes a second and
// yielding to guest reads; the last fetch triggers completion.
func (p *provisional) fill(ctx context.Context, rate int64, mgr *Manager) {
	lim := newLimiter(rate)
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
		p.c.fg.waitIdle()
		if _, err := p.chunk(ctx, i, maxChunks, false); err != nil {
			p.c.log.Warn("background fill of Glance image: range not fetched; will be fetched on read", "glance_id", p.meta.ID, "chunk", i, "err", err)
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
		if mgr != nil {
			mgr.filledBytes.Add(got)
			mgr.filledChunks.Add(int64(min(p.n, i+maxChunks) - i))
		}
		if lim.wait(ctx, got) != nil {
			return
		}
		i += maxChunks - 1
	}
}

// complete runs once every chunk has been seen: it hashes the whole image (from the verified
// chunks) against Glance's os_hash_value and checksum; on a match it writes the manifest (after
// every chunk is durable) and nova's name → digest; on a mismatch it marks the image bad.
func (p *provisional) complete() {
	defer close(p.done)
	for attempt := 0; ; attempt++ {
		err := p.completeOnce()
		if err == nil {
			return
		}
		if errors.Is(err, glance.ErrHashMismatch) || chunkstore.IsCorrupt(err) || attempt == 4 {
			p.c.countGlance(func(o *tier.Counters) { o.Corrupt.Add(1) })
			p.mu.Lock()
			p.bad = fmt.Errorf("%w: Glance image %s: %v", ErrBadImage, p.meta.ID, err)
			p.mu.Unlock()
			p.c.log.Error("Glance image failed its whole-image check: marked bad, reads fail", "glance_id", p.meta.ID, "err", err)
			return
		}
		p.c.log.Warn("Glance image: whole-image check could not run; trying again", "glance_id", p.meta.ID, "err", err)
		time.Sleep(time.Duration(attempt+1) * time.Second)
	}
}

func (p *provisional) completeOnce() error {
	ctx := context.Background()
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
	c.Flush()
	p.mu.Lock()
	m := &chunkstore.Manifest{Size: p.meta.Size, ChunkSize: p.cs, Chunks: append([]chunkstore.Digest(nil), p.digests...), Source: p.meta.Source()}
	p.mu.Unlock()
	d, err := c.local.PutManifest(ctx, m)
	if err == nil {
		err = c.writeAlias(p.meta.ID, d)
	}
	if err != nil {
		return fmt.Errorf("record the completed image: %w", err)
	}
	c.registerGlance(m)
	p.mu.Lock()
	p.final = d
	p.mu.Unlock()
	c.log.Info("Glance image complete and verified against os_hash_value: digest assigned", "glance_id", p.meta.ID, "image", d.String())
	if p.meta.HashValue != "" && p.meta.HashAlgo != "" {
		// Chunks, then the manifest, then the tier's index entry: the next host finds it.
		e := &GlanceIndexEntry{Manifest: d, HashAlgo: p.meta.HashAlgo, HashValue: p.meta.HashValue}
		c.wb.offerGlanceImage(p.meta.ID, d, m, e, c.localChunk)
	}
	return nil
}
