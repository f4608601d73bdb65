package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/basefs/basefs/chunkstore"
)

// An image's last use has one owner, this file: it is recorded, persisted and answered here,
// and nothing else reads or writes the image's use field or the uses/ directory.
//
//   - A guest read (or a ChunkSource's image being made) is a use, noted in memory by
//     noteUse — cheap, on the read path.
//   - nova's utime is a use at exactly the time it says (setUse; an older time ages the image).
//     It is persisted as the manifest's mtime (a provisional image's: its name file's), which
//     is also the image file's mtime in the mount: RecordedUse.
//   - Reads are persisted apart from that mtime — a change of it makes the kernel drop the
//     image's cached pages — in uses/<digest>, by its mtime, by saveUses (cleanup calls it
//     before it ages anything, Close as the process hands over or exits), so the next
//     daemon still knows.
//   - lastUse answers the latest of the three, for cleanup; it never writes.
//
// Every time comes from the cache's clock (Config.Now), which tests move instead of sleeping.

// imageUse is an image's last use noted in this process; only this file touches it.
type imageUse struct {
	ns atomic.Int64 // unix nanoseconds; 0: none noted
}

// now is the cache's clock.
func (c *Cache) now() time.Time {
	if c.clock != nil {
		return c.clock()
	}
	return time.Now()
}

// noteUse notes a use of im now (a guest read; a ChunkSource's image made).
func (im *Image) noteUse() { im.use.ns.Store(im.c.now().UnixNano()) }

// noted returns the use noted in this process (the Unix epoch if none).
func (im *Image) noted() time.Time { return time.Unix(0, im.use.ns.Load()) }

// recordedPath is the file whose mtime is im's recorded use.
func (c *Cache) recordedPath(d chunkstore.Digest, im *Image) string {
	if im != nil && im.src != nil {
		return im.src.UsePath()
	}
	return c.local.ManifestPath(d)
}

// RecordedUse returns the image's persisted last use: the manifest's mtime (for a provisional
// image, its name's), which its arrival and setUse (nova's utime) set. It is the file's mtime
// in the mount: it does not move with every read, so the kernel keeps the image's pages
// cached (FUSE drops them when it sees an image's mtime change). Without that file it is the
// use noted in this process.
func (im *Image) RecordedUse() time.Time {
	if fi, err := os.Stat(im.c.recordedPath(im.digest, im)); err == nil {
		return fi.ModTime()
	}
	return im.noted()
}

// setUse records t as the last use of image d, exactly: in memory, as the recorded use, and
// forgetting the reads persisted before it (the use is what nova's utime said).
func (c *Cache) setUse(d chunkstore.Digest, t time.Time) error {
	im := c.loaded(d)
	if im != nil {
		im.use.ns.Store(t.UnixNano())
	}
	if err := os.Chtimes(c.recordedPath(d, im), t, t); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("image %s: record its use: %w", d.Short(), err)
	}
	os.Remove(c.usePath(d))
	return nil
}

// lastUse returns when image d was last used: the latest of its recorded use (the manifest's
// mtime), its reads persisted by an earlier saveUses and its use noted in this process. It
// writes nothing; an image without a manifest is fs.ErrNotExist.
func (c *Cache) lastUse(d chunkstore.Digest) (time.Time, error) {
	t, err := c.lastUseOnDisk(d)
	if err != nil {
		return t, err
	}
	if im := c.loaded(d); im != nil && im.noted().After(t) {
		t = im.noted()
	}
	return t, nil
}

// saveUses persists the uses noted in this process that are later than what the state says
// (uses/<digest>), for the images with a manifest.
func (c *Cache) saveUses() {
	c.mu.Lock()
	ims := make([]*Image, 0, len(c.images))
	for _, im := range c.images {
		ims = append(ims, im)
	}
	c.mu.Unlock()
	for _, im := range ims {
		u := im.noted()
		if im.src != nil || im.use.ns.Load() == 0 {
			continue
		}
		if t, err := c.lastUseOnDisk(im.digest); err != nil || !u.After(t) {
			continue
		}
		up := c.usePath(im.digest)
		if err := os.Chtimes(up, u, u); err != nil {
			os.MkdirAll(filepath.Dir(up), 0o755)
			if f, err := os.Create(up); err == nil {
				f.Close()
				os.Chtimes(up, u, u)
			}
		}
	}
}

// lastUseOnDisk is lastUse without what this process noted.
func (c *Cache) lastUseOnDisk(d chunkstore.Digest) (time.Time, error) {
	fi, err := os.Stat(c.local.ManifestPath(d))
	if err != nil {
		return time.Time{}, err
	}
	t := fi.ModTime()
	if ui, err := os.Stat(c.usePath(d)); err == nil && ui.ModTime().After(t) {
		t = ui.ModTime()
	}
	return t, nil
}

// forgetUse drops the persisted reads of image d (it was removed).
func (c *Cache) forgetUse(d chunkstore.Digest) { os.Remove(c.usePath(d)) }

// usePath records, by its mtime, the last read of image d that a daemon saw.
func (c *Cache) usePath(d chunkstore.Digest) string {
	return filepath.Join(c.local.Root(), "uses", d.String())
}
