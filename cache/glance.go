package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance"
	"github.com/basefs/basefs/chunkstore/importer"
	"github.com/basefs/basefs/chunkstore/tier"
)

// ErrBadImage is wrapped by reads of a provisional image whose whole data failed Glance's
// os_hash_value or checksum: the image is marked bad and never served again by this process.
var ErrBadImage = errors.New("image marked bad: its data does not match Glance's hash")

// maxRangeBytes bounds one Glance range request (each costs 5–10 ms whatever its size, so
// sequential reads are coalesced up to this).
const maxRangeBytes = 16 << 20

// ProvisionalKey is the name under which the cache knows a Glance image that has no digest
// yet (a raw image being read lazily): the SHA-256 of "basefs-glance-provisional\x00<id>". It
// is never the digest of a manifest in practice and is never written to any store.
func ProvisionalKey(id string) chunkstore.Digest {
	return sha256.Sum256([]byte("basefs-glance-provisional\x00" + id))
}

// EnsureGlance makes Glance image id known to the cache and returns it:
//  1. nova's name already maps to a local manifest: that image;
//  2. the image carries basefs_manifest: the manifest from the origins (its source must be
//     this Glance image), chunks lazily from the origins or, for a raw image, Glance by range;
//  3. a raw image without a manifest: the manifest a shared tier's Glance index names, if it
//     describes this image's current data (another host completed it: indexedImage); else a
//     provisional image read lazily by range (see doc.go);
//  4. any other format: streamed once, checked against os_hash_value/checksum, converted with
//     qemu-img and chunked into the local state (nothing kept on any failure).
//
// An unknown id wraps chunkstore.ErrNotFound; an image not active, not bare or of a format
// basefs cannot read wraps glance.ErrUnusable; Glance down wraps glance.ErrUnavailable.
func (c *Cache) EnsureGlance(ctx context.Context, id string) (*Image, error) {
	if c.glance == nil {
		return nil, errors.New("no Glance configured for this daemon: start `basefs mount` with --glance-endpoint URL or OS_CLOUD / OS_* (Keystone)")
	}
	if err := glance.ValidateID(id); err != nil {
		return nil, err
	}
	name := glance.NovaName(id)
	if a, err := c.readAlias(name); err == nil && !a.digest.IsZero() {
		if im, err := c.Image(ctx, a.digest); err == nil {
			return im, nil
		}
	}
	c.mu.Lock()
	p := c.prov[id]
	c.mu.Unlock()
	if p != nil {
		if d := p.prov.finalDigest(); !d.IsZero() {
			return c.Image(ctx, d)
		}
		if err := p.prov.badErr(); err != nil {
			return nil, err
		}
		return p, nil
	}
	v, err, _ := c.manifestFlight.Do("glance:"+id, func() (any, error) {
		return c.ensureGlance(context.WithoutCancel(ctx), id)
	})
	if err != nil {
		return nil, err
	}
	return v.(*Image), nil
}

func (c *Cache) ensureGlance(ctx context.Context, id string) (*Image, error) {
	client := c.glance.Client()
	meta, err := client.Image(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := meta.Usable(); err != nil {
		return nil, err
	}
	if _, err := glance.QemuFormat(meta.DiskFormat); err != nil {
		return nil, err
	}
	if prop := meta.Manifest(); prop != "" {
		im, err := c.publishedImage(ctx, meta, prop)
		if err == nil {
			return im, nil
		}
		c.log.Warn("Glance image names a manifest basefs cannot use; falling back to Glance's data", "glance_id", id, "manifest", prop, "err", err)
	}
	if meta.DiskFormat == "raw" {
		if im := c.indexedImage(ctx, meta); im != nil {
			return im, nil // another host completed it and wrote it back to a shared tier
		}
		return c.newProvisional(meta)
	}
	res, _, err := glance.Import(ctx, client, c.local, id, importer.Options{})
	if err != nil {
		if errors.Is(err, glance.ErrHashMismatch) {
			c.countGlance(func(o *tier.Counters) { o.Corrupt.Add(1) })
		}
		return nil, err
	}
	c.countGlance(func(o *tier.Counters) { o.Fetches.Add(1); o.Bytes.Add(meta.Size) })
	c.log.Info("Glance image converted and imported", "glance_id", id, "format", meta.DiskFormat, "image", res.Digest.String())
	im, err := c.Image(ctx, res.Digest)
	if err != nil {
		return nil, err
	}
	if err := c.writeAlias(id, res.Digest); err != nil {
		return nil, fmt.Errorf("image %s: record nova's name: %w", id, err)
	}
	return im, nil
}

// publishedImage loads the manifest a Glance image's basefs_manifest property names; it is
// accepted only if its source is that image (same id, or the same os_hash_value).
func (c *Cache) publishedImage(ctx context.Context, meta *glance.Image, prop string) (*Image, error) {
	d, err := chunkstore.ParseDigest(prop)
	if err != nil {
		return nil, fmt.Errorf("property %s: %w", glance.ManifestProperty, err)
	}
	im, err := c.Image(ctx, d)
	if err != nil {
		return nil, err
	}
	src := im.m.Source
	if src.GlanceID != meta.ID && (src.HashValue == "" || src.HashValue != meta.HashValue) {
		return nil, fmt.Errorf("manifest %s describes Glance image %q (hash %q), not %s", d.Short(), src.GlanceID, src.HashValue, meta.ID)
	}
	if err := c.writeAlias(meta.ID, d); err != nil {
		return nil, err
	}
	return im, nil
}

// countGlance applies f to the Glance origin's counters.
func (c *Cache) countGlance(f func(*tier.Counters)) {
	if c.glanceIdx >= 0 {
		f(c.tiers.Counters(c.glanceIdx))
	}
}

// registerGlance tells the Glance origin where a manifest's chunks live in Glance.
func (c *Cache) registerGlance(m *chunkstore.Manifest) {
	if c.glance != nil {
		c.glance.Register(m)
	}
}

const (
	chunkUnknown uint8 = iota
	chunkKnown
	chunkHole
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

// localChunk returns chunk d, verified, from memory or the local state only.
func (c *Cache) localChunk(_ context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	if ch, ok := c.mem.get(d); ok {
		return ch, nil
	}
	if v, ok := c.pending.Load(d); ok {
		return v, nil
	}
	return c.readLocal(context.Background(), d)
}

// indexedImage looks raw Glance image meta up in the shared tiers' Glance index (GlanceIndex)
// and returns the image their entry names, or nil. An entry is used only if the manifest it
// names (fetched by digest, so verified) describes this Glance image, and both the entry and
// the manifest carry Glance's current os_hash_algo and os_hash_value; otherwise (the image
// changed, an entry of another writer, the tier down) the image goes provisional as before.
func (c *Cache) indexedImage(ctx context.Context, meta *glance.Image) *Image {
	if meta.HashValue == "" || meta.HashAlgo == "" {
		return nil
	}
	for i, o := range c.origins {
		gi, ok := o.(GlanceIndex)
		if !ok {
			continue
		}
		e, err := gi.GetGlanceIndex(ctx, meta.ID)
		if err != nil {
			if !chunkstore.IsNotFound(err) {
				c.log.Warn("shared tier's Glance index not readable; the image goes provisional", "glance_id", meta.ID, "tier", o.String(), "err", err)
			}
			continue
		}
		if e.HashAlgo != meta.HashAlgo || e.HashValue != meta.HashValue {
			c.log.Warn("shared tier's Glance index entry was made of other data (the image changed?); ignored", "glance_id", meta.ID, "tier", o.String(), "manifest", e.Manifest.String())
			continue
		}
		m, err := c.local.GetManifest(ctx, e.Manifest)
		fetched := false
		if chunkstore.IsNotFound(err) {
			m, err = o.GetManifest(ctx, e.Manifest)
			fetched = err == nil
		}
		if err != nil {
			if chunkstore.IsCorrupt(err) || errors.Is(err, chunkstore.ErrManifest) {
				c.tiers.Counters(i).Corrupt.Add(1)
			}
			c.log.Warn("manifest named by the shared tier's Glance index not usable; the image goes provisional", "glance_id", meta.ID, "tier", o.String(), "manifest", e.Manifest.String(), "err", err)
			continue
		}
		src := m.Source
		if src.GlanceID != meta.ID || src.Format != "raw" || src.HashAlgo != meta.HashAlgo || src.HashValue != meta.HashValue || m.Size != meta.Size {
			c.log.Warn("manifest named by the shared tier's Glance index describes other data; ignored", "glance_id", meta.ID, "tier", o.String(), "manifest", e.Manifest.String(), "source_glance_id", src.GlanceID)
			continue
		}
		if fetched {
			if _, err := c.local.PutManifest(ctx, m); err != nil {
				c.log.Warn("cannot store the manifest named by the Glance index", "glance_id", meta.ID, "err", err)
				return nil
			}
			c.stats.manifestFetches.Add(1)
		}
		im, err := c.Image(ctx, e.Manifest)
		if err == nil {
			err = c.writeAlias(meta.ID, e.Manifest)
		}
		if err != nil {
			c.log.Warn("image named by the shared tier's Glance index not usable; the image goes provisional", "glance_id", meta.ID, "err", err)
			return nil
		}
		c.log.Info("Glance raw image found in the shared tier's Glance index: chunks from the tier, behind it Glance by range", "glance_id", meta.ID, "tier", o.String(), "image", e.Manifest.String())
		return im
	}
	return nil
}
