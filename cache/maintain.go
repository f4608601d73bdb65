package cache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/importer"
	"github.com/basefs/basefs/chunkstore/inspect"
)

// nova's metadata operations on image names, at once (the FUSE tree calls them): utime
// records use, unlink removes an unused image, and a download renamed to an image name is
// adopted. The periodic cleanup (GC) applies the same removal after the minimum age.

// ErrInUse is wrapped by a removal of an image that an instance overlay or an open file uses.
var ErrInUse = errors.New("image in use")

// ErrNameMismatch is wrapped by an adoption whose content does not hash to its digest name.
var ErrNameMismatch = errors.New("content does not hash to the image name")

// Touch records t as the last use of image d, exactly (an older time ages the image: that is
// how an operator, or a test, makes it eligible for cleanup now).
func (m *Manager) Touch(ctx context.Context, d chunkstore.Digest, t time.Time) error {
	if err := m.c.setUse(d, t); err != nil {
		return err
	}
	m.touched.Add(1)
	return nil
}

// Remove removes image d, known by name, now: unless it is in use (ErrInUse), its manifest,
// its names (Config.Names), its boot profile and every local chunk no other image references go.
// A later lookup of a name the layer above resolves (a Glance image's) may bring it back.
func (m *Manager) Remove(ctx context.Context, d chunkstore.Digest, name string) error {
	m.gcMu.Lock()
	defer m.gcMu.Unlock()
	unlock, err := m.c.Local().ExclusiveRefs(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	users, err := m.inUse(ctx)
	if err != nil {
		return err
	}
	// The kernel sends a file's RELEASE after close(2) has returned: an image whose only user
	// is an open file that was just closed gets a moment for that release to arrive.
	if onlyOpenFiles(users[d]) {
		deadline := time.After(releaseWait)
	wait:
		for {
			released := m.c.releases.wait()
			if !slices.Contains(m.c.openImages(), d) {
				break
			}
			select {
			case <-released:
			case <-deadline:
				break wait
			}
		}
	}
	if onlyOpenFiles(users[d]) && !slices.Contains(m.c.openImages(), d) {
		delete(users, d)
	}
	if who := users[d]; len(who) > 0 {
		m.removeRefused.Add(1)
		return fmt.Errorf("image %s (%s): %w by %s", d.Short(), name, ErrInUse, strings.Join(who, ", "))
	}
	c := m.c
	chunks := c.forgetLazy(d)
	// Names first (removeLocked forgets every name of d; also name, which may be a
	// provisional image's): a crash part way leaves the whole image, or nothing of it.
	if err := c.names.Forget(d, name); err != nil {
		return err
	}
	if err := m.removeLocked(ctx, []chunkstore.Digest{d}, chunks, false, &GCReport{}); err != nil {
		return err
	}
	m.log.Info("image removed on unlink", "name", name, "image", d.String())
	return nil
}

// Adopt imports the file at path, exactly its bytes, as the image called name (nova's
// `<sha1>` or a `<digest>`): chunked and deduplicated into the local state, its name recorded.
// It is inspected first like any image: one nova would refuse (a backing file, a data file,
// a VMDK extent, …, whatever format it holds) is refused (inspect.ErrRefused) and nothing
// of it kept.
func (m *Manager) Adopt(ctx context.Context, path, name string) (chunkstore.Digest, error) {
	c := m.c
	// A writer of references until its name is recorded too (importer holds the lock itself
	// while it writes; this keeps the manifest from looking unnamed to a collector in between).
	unlock, err := c.Local().ShareRefs(ctx)
	if err != nil {
		return chunkstore.Digest{}, err
	}
	defer unlock()
	res, err := importer.Import(ctx, c.Local(), path, importer.Options{Verbatim: true, Limits: m.cfg.ImportLimits})
	if err != nil {
		if errors.Is(err, inspect.ErrRefused) {
			m.log.Warn("download refused: not adopted", "name", name, "err", err)
		}
		return chunkstore.Digest{}, m.cfg.Refusals.Record(name, "", err)
	}
	d := res.Digest
	switch len(name) {
	case 2 * chunkstore.DigestSize:
		if d.String() != name {
			if res.ManifestAdded {
				c.Local().DeleteManifest(ctx, d)
			}
			return chunkstore.Digest{}, fmt.Errorf("adopt %s as %s: its digest is %s: %w", path, name, d, ErrNameMismatch)
		}
	default:
		if err := c.names.Record(name, d); err != nil {
			return chunkstore.Digest{}, fmt.Errorf("adopt %s as %s: %w", path, name, err)
		}
	}
	m.adopted.Add(1)
	return d, nil
}

// releaseWait bounds how long a removal waits for the release of a file just closed.
const releaseWait = 500 * time.Millisecond

func onlyOpenFiles(who []string) bool {
	for _, w := range who {
		if w != "open file" {
			return false
		}
	}
	return len(who) > 0
}
