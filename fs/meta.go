package fs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/inspect"
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

// setImageAttr: utime on an image or view records the image's last use, and a utime to the
// current time (utime(path, NULL): nova's cache_image, `touch`; not an explicit time, which is
// how an image is aged) is also a precache request (Maintainer.Precache); every other change
// (chmod, chown, truncate) is refused with EROFS — libvirt's DAC driver tolerates EROFS when
// it relabels a backing file, and fails a domain start on EACCES.
func (f *FS) setImageAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if in.Valid&(fuse.FATTR_MODE|fuse.FATTR_UID|fuse.FATTR_GID|fuse.FATTR_SIZE) != 0 {
		return fuse.Status(syscall.EROFS)
	}
	v, st := f.nodeView(cancel, in.NodeId)
	if !st.Ok() {
		return st
	}
	if in.Valid&(fuse.FATTR_ATIME|fuse.FATTR_MTIME) != 0 {
		if f.cfg.Maintainer == nil {
			return fuse.Status(syscall.EROFS)
		}
		t, ok := in.GetMTime()
		if !ok {
			t, _ = in.GetATime()
		}
		if err := f.cfg.Maintainer.Touch(ctxOf(cancel), v.im.Digest(), t); err != nil {
			f.cfg.Logger.Error("utime of an image failed", "image", v.im.Digest().String(), "err", err)
			return fuse.EIO
		}
		if in.Valid&fuse.FATTR_MTIME_NOW != 0 {
			// The use is recorded: a precache that cannot start is logged, not nova's error.
			if _, err := f.cfg.Maintainer.Precache(ctxOf(cancel), v.im.Digest()); err != nil {
				f.cfg.Logger.Warn("utime to now of an image: precache not started", "image", v.im.Digest().String(), "err", err)
			}
		}
	}
	f.viewAttr(in.NodeId, v, &out.Attr)
	out.SetTimeout(attrTimeout)
	return fuse.OK
}

func (f *FS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	defer f.track("unlink")()
	if h.NodeId != fuse.FUSE_ROOT_ID {
		return fuse.ENOTDIR
	}
	if f.plain(name) {
		return f.unlinkFile(h, name)
	}
	if !IsImageName(name) {
		return fuse.Status(syscall.EROFS) // no writable area
	}
	if f.cfg.Maintainer == nil {
		return fuse.Status(syscall.EROFS)
	}
	resent := false
	if f.journal != nil {
		var st fuse.Status
		if resent, st = f.begin(h, "unlink-image "+name); !st.Ok() {
			return st
		}
	}
	ctx := ctxOf(cancel)
	n, _ := ParseName(name)
	d, ok, err := resolve(ctx, f.cfg.Resolver, n.Ref)
	if err != nil && !chunkstore.IsNotFound(err) {
		f.cfg.Logger.Error("unlink: cannot resolve the image", "name", name, "err", err)
		return fuse.EIO
	}
	if !ok || chunkstore.IsNotFound(err) {
		if resent {
			return fuse.OK // removed by the process that died
		}
		return fuse.ENOENT
	}
	if err := f.cfg.Maintainer.Remove(ctx, d, name); err != nil {
		switch {
		case errors.Is(err, cache.ErrInUse):
			f.cfg.Logger.Info("unlink refused: image in use", "name", name, "image", d.String(), "err", err)
			return fuse.Status(syscall.EBUSY)
		case chunkstore.IsNotFound(err):
			return fuse.ENOENT
		}
		f.cfg.Logger.Error("unlink of an image failed", "name", name, "image", d.String(), "err", err)
		return fuse.EIO
	}
	f.forgetImage(d)
	return fuse.OK
}

// forgetImage tells the kernel the image's nodes are gone (their attributes and pages).
func (f *FS) forgetImage(d chunkstore.Digest) {
	inos := f.nodes.ofImage(d)
	if f.srv == nil || len(inos) == 0 {
		return
	}
	srv := f.srv
	go func() { // after the reply: the kernel holds locks until then
		for _, ino := range inos {
			srv.InodeNotify(ino, 0, 0)
		}
	}()
}

func (f *FS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	defer f.track("rename")()
	if in.NodeId != fuse.FUSE_ROOT_ID || in.Newdir != fuse.FUSE_ROOT_ID {
		return fuse.ENOTDIR
	}
	if !f.plain(oldName) {
		return fuse.Status(syscall.EROFS) // images keep their names
	}
	if !IsImageName(newName) {
		return f.renameFiles(in, oldName, newName)
	}
	return f.adopt(cancel, in, oldName, newName)
}

// adopt is the rename of a writable file to an image name: nova's own download
// (`<sha1>.part` → `<sha1>`) becomes a content-addressed image, served verified from then on.
func (f *FS) adopt(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if f.cfg.Maintainer == nil || in.Flags&^uint32(1) != 0 { // RENAME_NOREPLACE only
		return fuse.Status(syscall.EROFS)
	}
	resent, st := f.begin(&in.InHeader, "adopt "+oldName+" "+newName)
	if !st.Ok() {
		return st
	}
	ctx := ctxOf(cancel)
	// The download is opened beneath the area without following a link, and adopted
	// through that descriptor: whatever the name is swapped for meanwhile is not read.
	src, err := f.files.openAt(filepath.Join(f.files.dir, oldName), os.O_RDONLY, 0)
	if err == nil {
		defer src.Close()
	}
	var fi os.FileInfo
	if err == nil {
		fi, err = src.Stat()
	}
	if err != nil {
		if resent && errors.Is(err, os.ErrNotExist) {
			n, _ := ParseName(newName)
			if _, ok, _ := resolve(ctx, f.cfg.Resolver, n.Ref); ok {
				return fuse.OK // adopted by the process that died
			}
		}
		return fuse.Status(errnoOf(err))
	}
	if !fi.Mode().IsRegular() {
		return fuse.EINVAL
	}
	if n, _ := ParseName(newName); n.ViewGiB != 0 {
		return fuse.EINVAL // a resized view is computed, never stored
	}
	if in.Flags&1 != 0 { // RENAME_NOREPLACE
		n, _ := ParseName(newName)
		if _, ok, _ := resolve(ctx, f.cfg.Resolver, n.Ref); ok {
			return fuse.Status(syscall.EEXIST)
		}
	}
	start := time.Now()
	// This process's pid, not self: the importer may hand the path to a child (qemu-img).
	p := "/proc/" + strconv.Itoa(os.Getpid()) + "/fd/" + strconv.Itoa(int(src.Fd()))
	d, err := f.cfg.Maintainer.Adopt(context.WithoutCancel(ctx), p, newName)
	if err != nil {
		f.cfg.Logger.Error("adoption of a download as an image failed", "from", oldName, "name", newName, "err", err)
		if errors.Is(err, cache.ErrNameMismatch) {
			return fuse.EINVAL
		}
		if errors.Is(err, inspect.ErrRefused) {
			return fuse.EACCES // an image nova would refuse (a backing file, …): never adopted
		}
		return fuse.EIO
	}
	f.files.mu.Lock()
	fileNode, known := f.files.byName[oldName]
	f.files.mu.Unlock()
	if known {
		f.nodes.alias(fileNode, node{digest: d})
	}
	if errno := f.files.unlink(oldName); errno != 0 && errno != syscall.ENOENT {
		f.cfg.Logger.Error("adopted download left behind", "from", oldName, "err", errno)
	}
	if IsImageName(newName) && f.plain(newName) {
		// A plain file of that name (written directly) would hide the adopted image.
		f.files.unlink(newName)
	}
	f.cfg.Logger.Info("adopted a download as an image", "from", oldName, "name", newName, "image", d.String(), "took", time.Since(start))
	if f.srv != nil {
		srv := f.srv
		go func() { // the kernel moved the file's node to newName: make it look again
			srv.EntryNotify(fuse.FUSE_ROOT_ID, newName)
			srv.EntryNotify(fuse.FUSE_ROOT_ID, oldName)
		}()
	}
	return fuse.OK
}

// seek answers SEEK_DATA and SEEK_HOLE on a view from its manifest: hole chunks and the
// zeros past the image are holes (so cp and qemu-img skip them without reading); a
// provisional image's chunks are all data until it has a manifest.
func (v *view) seek(off int64, whence uint32) (int64, syscall.Errno) {
	if off < 0 || off >= v.size {
		return 0, syscall.ENXIO
	}
	m := v.im.Manifest()
	prov := v.im.Lazy() || len(m.Chunks) == 0
	data := func(pos int64) bool {
		return pos < m.Size && (prov || !m.Chunks[pos/m.ChunkSize].IsZero())
	}
	next := func(pos int64) int64 {
		if pos >= m.Size {
			return v.size
		}
		return min((pos/m.ChunkSize+1)*m.ChunkSize, m.Size)
	}
	switch whence {
	case unix.SEEK_DATA:
		for pos := off; pos < v.size; pos = next(pos) {
			if data(pos) {
				return pos, 0
			}
		}
		return 0, syscall.ENXIO
	case unix.SEEK_HOLE:
		for pos := off; pos < v.size; pos = next(pos) {
			if !data(pos) {
				return pos, 0
			}
		}
		return v.size, 0
	}
	return 0, syscall.EINVAL
}
