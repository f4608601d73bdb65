package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

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
