package fs

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
)

// Maintainer takes nova's metadata operations on image names (the cache manager).
type Maintainer interface {
	// Touch records t as the last use of image d (nova's utime of a base file).
	Touch(ctx context.Context, d chunkstore.Digest, t time.Time) error
	// Precache takes a utime to the current time of image d (nova's cache_image, `touch`): it
	// may start fetching the whole image in the background, and returns before any fetch.
	// It reports whether it started one.
	Precache(ctx context.Context, d chunkstore.Digest) (bool, error)
	// Remove removes image d, known by name, now (nova's image cache manager's unlink): its
	// manifest, its name and every chunk no other image references. An image in use wraps
	// cache.ErrInUse and nothing is removed.
	Remove(ctx context.Context, d chunkstore.Digest, name string) error
	// Adopt makes the file at path the image called name (a finished download renamed to an
	// image name): chunked, deduplicated, recorded under name. A 64-hex name the content does
	// not hash to wraps cache.ErrNameMismatch and nothing is recorded.
	Adopt(ctx context.Context, path, name string) (chunkstore.Digest, error)
}

// imageTree is the images' namespace under the root: names resolved to images (the cache),
// each view a node (imageNode, view.go) recorded in the node table under its deterministic
// inode number.
type imageTree struct {
	cfg     *Config
	nodes   *nodeTable
	journal *journal // nil: no writable area (an image's unlink is then not journaled)
	kernel  *kernel
}

// resolve maps the image part of a name to an image digest (Config.Resolver).
func (t *imageTree) resolve(ctx context.Context, ref string) (chunkstore.Digest, bool, error) {
	return resolve(ctx, t.cfg.Resolver, ref)
}

// lookup maps an image name to its view's node.
func (t *imageTree) lookup(ctx context.Context, name string, out *fuse.EntryOut) fuse.Status {
	n, ok := ParseName(name)
	if !ok {
		out.SetEntryTimeout(negativeTimeout)
		return fuse.ENOENT
	}
	d, ok, err := t.resolve(ctx, n.Ref)
	if err != nil {
		t.cfg.Logger.Error("lookup failed", "name", name, "err", err)
		if chunkstore.IsNotFound(err) {
			out.SetEntryTimeout(negativeTimeout)
			return fuse.ENOENT
		}
		return fuse.EIO
	}
	if !ok {
		out.SetEntryTimeout(negativeTimeout)
		return fuse.ENOENT
	}
	v, errno := t.view(ctx, d, n.ViewGiB)
	if errno != 0 {
		if errno == syscall.ENOENT {
			out.SetEntryTimeout(negativeTimeout)
		}
		return fuse.Status(errno)
	}
	ino := inodeNumber(d, n.ViewGiB)
	if err := t.nodes.add(ino, d, n.ViewGiB); err != nil {
		t.cfg.Logger.Error("lookup: cannot record the node", "name", name, "err", err)
		if errors.Is(err, errTooManyViews) {
			return fuse.Status(syscall.EMLINK)
		}
		return fuse.EIO
	}
	out.NodeId = ino
	out.Generation = 1
	t.viewAttr(ino, v, &out.Attr)
	out.SetEntryTimeout(positiveTimeout)
	out.SetAttrTimeout(attrTimeout)
	return fuse.OK
}

// view resolves image d, resized to viewGiB GiB (0: its own size), to its image and size
// (ENOENT: no such image or view).
func (t *imageTree) view(ctx context.Context, d chunkstore.Digest, viewGiB int64) (view, syscall.Errno) {
	im, err := t.cfg.Images.Image(ctx, d)
	if err != nil {
		if chunkstore.IsNotFound(err) {
			return view{}, syscall.ENOENT
		}
		t.cfg.Logger.Error("image lookup failed", "image", d.String(), "err", err)
		return view{}, syscall.EIO
	}
	size := im.Size()
	if viewGiB > 0 {
		size = viewGiB * GiB
		if size < im.Size() {
			// nova never asks for a view smaller than its image: it does not exist.
			return view{}, syscall.ENOENT
		}
	}
	return view{im: im, size: size}, 0
}

// viewAttr: a view is readable by its owner and group (qemu runs in the group); its mtime is the image's
// recorded use (nova's utime; what nova's image cache manager ages — not every read, which
// would make the kernel drop the image's cached pages) and its blocks the bytes of it held
// locally (what nova's disk usage counts).
func (t *imageTree) viewAttr(ino uint64, v view, a *fuse.Attr) {
	a.Ino = ino
	a.Mode = fuse.S_IFREG | imageMode
	a.Size = uint64(v.size)
	a.Blocks = uint64((v.im.StoredBytes() + 511) / 512)
	a.Blksize = 1 << 20
	a.Nlink = 1
	a.Owner = t.cfg.Access.owner()
	tm := v.im.RecordedUse()
	a.SetTimes(&tm, &tm, &tm)
}

// unlink removes the image called name now (Maintainer.Remove): EBUSY while it is in use.
func (t *imageTree) unlink(ctx context.Context, h *fuse.InHeader, name string) fuse.Status {
	if t.cfg.Maintainer == nil {
		return fuse.Status(syscall.EROFS)
	}
	resent, st := t.journal.request(h, "unlink-image "+name, t.cfg.Logger)
	if !st.Ok() {
		return st
	}
	n, _ := ParseName(name)
	d, ok, err := t.resolve(ctx, n.Ref)
	if err != nil && !chunkstore.IsNotFound(err) {
		t.cfg.Logger.Error("unlink: cannot resolve the image", "name", name, "err", err)
		return fuse.EIO
	}
	if !ok || chunkstore.IsNotFound(err) {
		if resent {
			return fuse.OK // removed by the process that died
		}
		return fuse.ENOENT
	}
	if err := t.cfg.Maintainer.Remove(ctx, d, name); err != nil {
		switch {
		case errors.Is(err, cache.ErrInUse):
			t.cfg.Logger.Info("unlink refused: image in use", "name", name, "image", d.String(), "err", err)
			return fuse.Status(syscall.EBUSY)
		case chunkstore.IsNotFound(err):
			return fuse.ENOENT
		}
		t.cfg.Logger.Error("unlink of an image failed", "name", name, "image", d.String(), "err", err)
		return fuse.EIO
	}
	t.kernel.forget(t.nodes.ofImage(d)) // their attributes and pages
	return fuse.OK
}

// inodeNumber derives a view's inode number from its image and size, so it is the same in
// every daemon process (a restarted daemon serves the kernel's existing inodes). 0 and 1 are
// reserved (1 is the root).
func inodeNumber(d chunkstore.Digest, viewGiB int64) uint64 {
	var buf [chunkstore.DigestSize + 8]byte
	copy(buf[:], d[:])
	binary.LittleEndian.PutUint64(buf[chunkstore.DigestSize:], uint64(viewGiB))
	h := sha256.Sum256(buf[:])
	ino := binary.LittleEndian.Uint64(h[:8])
	if ino < 2 {
		ino += 2
	}
	return ino
}
