package glanceimg

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/chunkstore/importer"
	"github.com/basefs/basefs/chunkstore/inspect"
	"github.com/basefs/basefs/chunkstore/tier"
)

// Config configures a Layer.
type Config struct {
	Cache *cache.Cache
	// Names is the state's alias table (the one the Cache was configured with).
	Names *Names
	// Origin reads Glance images by range; it must be the last of the Cache's origins.
	Origin *glance.Origin
	// Catalog, when set, makes every image Glance lists known under nova's name before the
	// host has seen it (Resolve).
	Catalog *glance.Catalog
	// Logger receives the layer's events (nil: discard).
	Logger *slog.Logger
	// Limits bound the images converted and the space they take (zero fields: no bound).
	Limits importer.Limits
	// Refusals records the images inspection refused (nil: not recorded, and a refused image
	// is inspected again at its next lookup).
	Refusals *inspect.Refusals
}

// Layer makes Glance images usable by the cache, by id or by nova's name. It is safe for
// concurrent use. Lock order: Layer.mu, then a provisional's mu; no lock is held across I/O.
type Layer struct {
	c       *cache.Cache
	names   *Names
	origin  *glance.Origin // nil: no Glance (only the names of adopted downloads resolve)
	catalog *glance.Catalog
	log     *slog.Logger
	flight  singleflight.Group // one ensure per Glance id

	ctx    context.Context // ends with Close: completions waiting to retry stop
	cancel context.CancelFunc

	retries       atomic.Int64 // completion attempts that failed for a transient cause
	indexIgnored  atomic.Int64 // shared-tier index entries not backed by basefs_manifest
	propsRecorded atomic.Int64 // basefs_manifest properties this host recorded

	limits   importer.Limits   // of conversions
	refusals *inspect.Refusals // inspection's (inspect.go)

	mu   sync.Mutex
	prov map[string]*provisional // lazily read images by Glance id
}

// New returns a Layer over cfg.Cache.
func New(cfg Config) *Layer {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Layer{c: cfg.Cache, names: cfg.Names, origin: cfg.Origin, catalog: cfg.Catalog, log: log, prov: make(map[string]*provisional),
		limits: cfg.Limits, refusals: cfg.Refusals}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	cfg.Cache.KeepCounter("glance.completion_retries", &l.retries)
	cfg.Cache.KeepCounter("glance.tier_index_ignored", &l.indexIgnored)
	cfg.Cache.KeepCounter("glance.manifests_recorded", &l.propsRecorded)
	cfg.Names.OnForget(l.forget)
	return l
}

// Close stops the completions that wait to retry (the daemon is exiting) and waits, at most
// closeWait, for those running to end: a wait to retry ends at once; an attempt fails at its
// next lock or Glance read, cancelled (a chunk fetch in flight is bounded by its origin's
// deadline, which the daemon's exit does not wait for).
func (l *Layer) Close() {
	l.cancel()
	l.mu.Lock()
	ps := make([]*provisional, 0, len(l.prov))
	for _, p := range l.prov {
		ps = append(ps, p)
	}
	l.mu.Unlock()
	bound := time.NewTimer(closeWait)
	defer bound.Stop()
	for _, p := range ps {
		p.mu.Lock()
		running := p.finished
		p.mu.Unlock()
		if !running {
			continue
		}
		select {
		case <-p.done:
		case <-bound.C:
			l.log.Warn("Glance image completions still running at close", "glance_id", p.meta.ID)
			return
		}
	}
}

// closeWait bounds how long Close waits for running completions.
const closeWait = 2 * time.Second

// Stats returns what the layer tells an operator (basefs status).
func (l *Layer) Stats() glanceref.LayerStats {
	s := glanceref.LayerStats{CompletionRetries: l.retries.Load(), TierIndexIgnored: l.indexIgnored.Load(), ManifestsRecorded: l.propsRecorded.Load()}
	l.mu.Lock()
	ps := make([]*provisional, 0, len(l.prov))
	for _, p := range l.prov {
		ps = append(ps, p)
	}
	l.mu.Unlock()
	for _, p := range ps {
		if c, ok := p.completion(); ok {
			s.Completing = append(s.Completing, c)
		}
	}
	slices.SortFunc(s.Completing, func(a, b glanceref.Completion) int { return strings.Compare(a.GlanceID, b.GlanceID) })
	return s
}

// forget drops the lazy state of any Glance image that was, or completed as, image d.
func (l *Layer) forget(d chunkstore.Digest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, p := range l.prov {
		if p.key == d || p.finalDigest() == d {
			delete(l.prov, id)
		}
	}
}

// counters returns the Glance origin's counters (nil: none).
func (l *Layer) counters() *tier.Counters { return l.c.OriginCounters(l.origin) }

// maxRangeBytes bounds one Glance range request (each costs 5–10 ms whatever its size, so
// sequential reads are coalesced up to this).
const maxRangeBytes = 16 << 20

// ProvisionalKey is the name under which the cache knows a Glance image that has no digest
// yet (a raw image being read lazily): the SHA-256 of "basefs-glance-provisional\x00<id>". It
// is never the digest of a manifest in practice and is never written to any store.
func ProvisionalKey(id string) chunkstore.Digest {
	return sha256.Sum256([]byte("basefs-glance-provisional\x00" + id))
}

// Ensure makes Glance image id known to the cache and returns it:
//  1. nova's name already maps to a local manifest: that image;
//  2. the image carries basefs_manifest: the manifest from the origins (its source must be
//     this Glance image), chunks lazily from the origins or, for a raw image, Glance by range;
//  3. a raw image without a manifest: a provisional image read lazily by range (see doc.go);
//     a shared tier's Glance index entry is never used, only reported when it disagrees with
//     basefs_manifest (auditIndex);
//  4. any other format: streamed once, checked against os_hash_value/checksum, converted with
//     qemu-img and chunked into the local state (nothing kept on any failure).
//
// An unknown id wraps chunkstore.ErrNotFound; an image not active, not bare or of a format
// basefs cannot read wraps glance.ErrUnusable; Glance down wraps glance.ErrUnavailable.
func (l *Layer) Ensure(ctx context.Context, id string) (*cache.Image, error) {
	if l.origin == nil {
		return nil, errors.New("no Glance configured for this daemon: start `basefs mount` with --glance-endpoint URL or OS_CLOUD / OS_* (Keystone)")
	}
	if err := glanceref.ValidateID(id); err != nil {
		return nil, err
	}
	name := glanceref.NovaName(id)
	if a, err := l.names.read(name); err == nil && !a.digest.IsZero() {
		if im, err := l.c.Image(ctx, a.digest); err == nil {
			return im, nil
		}
	}
	l.mu.Lock()
	p := l.prov[id]
	l.mu.Unlock()
	if p != nil {
		d, err := p.Result()
		if !d.IsZero() {
			return l.c.Image(ctx, d)
		}
		if err != nil {
			return nil, err
		}
		return p.im, nil
	}
	v, err, _ := l.flight.Do(id, func() (any, error) {
		return l.ensure(context.WithoutCancel(ctx), id)
	})
	if err != nil {
		return nil, err
	}
	return v.(*cache.Image), nil
}

func (l *Layer) ensure(ctx context.Context, id string) (*cache.Image, error) {
	if err := l.refusals.Glance(id); err != nil {
		return nil, fmt.Errorf("image %s: %w", id, err)
	}
	client := l.origin.Client()
	meta, err := client.Image(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := meta.Usable(); err != nil {
		return nil, err
	}
	if err := glance.CheckDiskFormat(meta.DiskFormat); err != nil {
		return nil, err
	}
	l.auditIndex(ctx, meta)
	if prop := meta.Manifest(); prop != "" {
		im, err := l.publishedImage(ctx, meta, prop)
		if err == nil {
			return im, nil
		}
		l.log.Warn("Glance image names a manifest basefs cannot use; falling back to Glance's data", "glance_id", id, "manifest", prop, "err", err)
	}
	if meta.DiskFormat == "raw" {
		if err := l.inspectLazy(ctx, meta); err != nil {
			return nil, l.refused(id, err)
		}
		return l.newProvisional(meta)
	}
	res, _, err := glance.Import(ctx, client, l.c.Local(), id, importer.Options{Limits: l.limits})
	o := l.counters()
	if err != nil {
		l.refused(id, err)
		if errors.Is(err, glance.ErrHashMismatch) && o != nil {
			o.Corrupt.Add(1)
		}
		return nil, err
	}
	if o != nil {
		o.Fetches.Add(1)
		o.Bytes.Add(meta.Size)
	}
	l.log.Info("Glance image converted and imported", "glance_id", id, "format", meta.DiskFormat, "image", res.Digest.String())
	im, err := l.c.Image(ctx, res.Digest)
	if err != nil {
		return nil, err
	}
	if err := l.names.Write(id, res.Digest); err != nil {
		return nil, fmt.Errorf("image %s: record nova's name: %w", id, err)
	}
	return im, nil
}

// publishedImage loads the manifest a Glance image's basefs_manifest property names; it is
// accepted only if its source is that image (same id, or the same os_hash_value).
func (l *Layer) publishedImage(ctx context.Context, meta *glance.Image, prop string) (*cache.Image, error) {
	d, err := chunkstore.ParseDigest(prop)
	if err != nil {
		return nil, fmt.Errorf("property %s: %w", glance.ManifestProperty, err)
	}
	im, err := l.c.Image(ctx, d)
	if err != nil {
		return nil, err
	}
	src := im.Manifest().Source
	if src.GlanceID != meta.ID && (src.HashValue == "" || src.HashValue != meta.HashValue) {
		return nil, fmt.Errorf("manifest %s describes Glance image %q (hash %q), not %s", d.Short(), src.GlanceID, src.HashValue, meta.ID)
	}
	if err := l.names.Write(meta.ID, d); err != nil {
		return nil, err
	}
	return im, nil
}
