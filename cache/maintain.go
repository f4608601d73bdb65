package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/importer"
)

// nova's metadata operations on image names, at once (the FUSE tree calls them): utime
// records use, unlink removes an unused image, and a download renamed to an image name is
// adopted. The periodic cleanup (GC) applies the same removal after the minimum age.

// ErrInUse is wrapped by a removal of an image that an instance overlay or an open file uses.
var ErrInUse = errors.New("image in use")

// ErrNameMismatch is wrapped by an adoption whose content does not hash to its digest name.
var ErrNameMismatch = errors.New("content does not hash to the image name")

// LastUse returns when the image was last used: the later of its persisted record (the
// manifest's mtime; for a provisional image, its name's) and its last read in this process.
func (im *Image) LastUse() time.Time {
	t := time.Unix(0, im.lastUse.Load())
	p := im.c.local.ManifestPath(im.digest)
	if im.prov != nil {
		p = im.c.aliasPath(im.prov.meta.ID)
	}
	if fi, err := os.Stat(p); err == nil && fi.ModTime().After(t) {
		t = fi.ModTime()
	}
	return t
}

// Touch records t as the last use of image d, exactly (an older time ages the image: that is
// how an operator, or a test, makes it eligible for cleanup now).
func (m *Manager) Touch(ctx context.Context, d chunkstore.Digest, t time.Time) error {
	c := m.c
	c.mu.Lock()
	im := c.images[d]
	c.mu.Unlock()
	p := c.local.ManifestPath(d)
	if im != nil {
		im.lastUse.Store(t.UnixNano())
		if im.prov != nil {
			p = c.aliasPath(im.prov.meta.ID)
		}
	}
	if err := os.Chtimes(p, t, t); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("image %s: record its use: %w", d.Short(), err)
	}
	m.touched.Add(1)
	return nil
}

// Remove removes image d, known by name, now: unless it is in use (ErrInUse), its manifest,
// its recorded names, its boot profile and every local chunk no other image references go.
// A later lookup of a Glance image's name brings it back, lazily.
func (m *Manager) Remove(ctx context.Context, d chunkstore.Digest, name string) error {
	m.gcMu.Lock()
	defer m.gcMu.Unlock()
	users, err := m.inUse(ctx)
	if err != nil {
		return err
	}
	if who := users[d]; len(who) > 0 {
		m.removeRefused.Add(1)
		return fmt.Errorf("image %s (%s): %w by %s", d.Short(), name, ErrInUse, strings.Join(who, ", "))
	}
	c := m.c
	c.mu.Lock()
	im := c.images[d]
	if im != nil && im.prov != nil {
		// A Glance image still read lazily: it has no manifest, only its name and chunks.
		delete(c.images, d)
	}
	for id, p := range c.prov {
		// The lazily read image d is, or that completed as d: a later lookup of its name
		// starts from Glance again.
		if p.digest == d || p.prov.finalDigest() == d {
			delete(c.prov, id)
		}
	}
	c.mu.Unlock()
	var chunks []chunkstore.Digest
	if im != nil && im.prov != nil {
		im.prov.mu.Lock()
		for i, st := range im.prov.state {
			if st == chunkKnown {
				chunks = append(chunks, im.prov.digests[i])
			}
		}
		im.prov.mu.Unlock()
	}
	if err := m.removeLocked(ctx, []chunkstore.Digest{d}, chunks, false, &GCReport{}); err != nil {
		return err
	}
	if err := c.removeAliases(d, name); err != nil {
		return err
	}
	c.log.Info("image removed on unlink", "name", name, "image", d.String())
	return nil
}

// Adopt imports the file at path, exactly its bytes, as the image called name (nova's
// `<sha1>` or a `<digest>`): chunked and deduplicated into the local state, its name recorded.
func (m *Manager) Adopt(ctx context.Context, path, name string) (chunkstore.Digest, error) {
	c := m.c
	res, err := importer.Import(ctx, c.local, path, importer.Options{Format: "raw"})
	if err != nil {
		return chunkstore.Digest{}, err
	}
	d := res.Digest
	switch len(name) {
	case 2 * chunkstore.DigestSize:
		if d.String() != name {
			if res.ManifestAdded {
				c.local.DeleteManifest(ctx, d)
			}
			return chunkstore.Digest{}, fmt.Errorf("adopt %s as %s: its digest is %s: %w", path, name, d, ErrNameMismatch)
		}
	default:
		if err := writeNameAlias(c.local.Root(), name, d); err != nil {
			return chunkstore.Digest{}, fmt.Errorf("adopt %s as %s: %w", path, name, err)
		}
	}
	m.adopted.Add(1)
	return d, nil
}
