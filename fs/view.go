package fs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
)

// imageNode is a node of the image tree: a view of image digest, resized to viewGiB GiB
// (0: the image itself). One exists per node id in the node table (nodes.go), made when the
// id is first recorded; the node id a request names is its inode number (inodeNumber), or a
// writable file's id adopted as this image. A view is read-only: utime is the only change it
// takes (setAttr).
type imageNode struct {
	readOnly
	t       *imageTree
	digest  chunkstore.Digest
	viewGiB int64
}

// view is a read-only file: an image, zero-extended to size.
type view struct {
	im   *cache.Image
	size int64
}

func (n *imageNode) view(ctx context.Context) (view, syscall.Errno) {
	return n.t.view(ctx, n.digest, n.viewGiB)
}

func (n *imageNode) getAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	v, errno := n.view(ctxOf(cancel))
	if errno != 0 {
		return fuse.Status(errno)
	}
	n.t.viewAttr(in.NodeId, v, &out.Attr)
	out.SetTimeout(attrTimeout)
	return fuse.OK
}

// setAttr: utime on an image or view records the image's last use, and a utime to the
// current time (utime(path, NULL): nova's cache_image, `touch`; not an explicit time, which is
// how an image is aged) is also a precache request (Maintainer.Precache); every other change
// (chmod, chown, truncate) is refused with EROFS — libvirt's DAC driver tolerates EROFS when
// it relabels a backing file, and fails a domain start on EACCES.
func (n *imageNode) setAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if in.Valid&(fuse.FATTR_MODE|fuse.FATTR_UID|fuse.FATTR_GID|fuse.FATTR_SIZE) != 0 {
		return fuse.Status(syscall.EROFS)
	}
	ctx := ctxOf(cancel)
	v, errno := n.view(ctx)
	if errno != 0 {
		return fuse.Status(errno)
	}
	if in.Valid&(fuse.FATTR_ATIME|fuse.FATTR_MTIME) != 0 {
		m := n.t.cfg.Maintainer
		if m == nil {
			return fuse.Status(syscall.EROFS)
		}
		t, ok := in.GetMTime()
		if !ok {
			t, _ = in.GetATime()
		}
		if err := m.Touch(ctx, v.im.Digest(), t); err != nil {
			n.t.cfg.Logger.Error("utime of an image failed", "image", v.im.Digest().String(), "err", err)
			return fuse.EIO
		}
		if in.Valid&fuse.FATTR_MTIME_NOW != 0 {
			// The use is recorded: a precache that cannot start is logged, not nova's error.
			if _, err := m.Precache(ctx, v.im.Digest()); err != nil {
				n.t.cfg.Logger.Warn("utime to now of an image: precache not started", "image", v.im.Digest().String(), "err", err)
			}
		}
	}
	n.t.viewAttr(in.NodeId, v, &out.Attr)
	out.SetTimeout(attrTimeout)
	return fuse.OK
}

// open refuses writing. The kernel may keep the file's pages (images are immutable and only
// verified bytes are ever served); an O_DIRECT open (qemu's cache='none') gets direct I/O.
func (n *imageNode) open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if st := openReadOnly(n.t.cfg, in); !st.Ok() {
		return st
	}
	v, errno := n.view(ctxOf(cancel))
	if errno != 0 {
		return fuse.Status(errno)
	}
	v.im.Acquire() // an open image is in use until the file is released
	out.Fh = fhImage
	out.OpenFlags = fuse.FOPEN_KEEP_CACHE
	if in.Flags&syscall.O_DIRECT != 0 || v.im.Lazy() {
		// A provisional image (a Glance image before its whole-image check) may yet be marked
		// bad: its bytes must not outlive that in the kernel's page cache.
		out.OpenFlags = fuse.FOPEN_DIRECT_IO
	}
	return fuse.OK
}

func (n *imageNode) release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	if v, errno := n.view(ctxOf(cancel)); errno == 0 {
		v.im.Release()
	}
}

// read serves [off, off+len(buf)) of the view: the image's verified bytes, then zeros. The hot
// path: one context, the image from the cache, and the reply in a buffer the cache lends
// (streamResult) — nothing else is allocated or locked here.
func (n *imageNode) read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	ctx := ctxOf(cancel)
	v, errno := n.view(ctx)
	if errno != 0 {
		return nil, fuse.Status(errno)
	}
	off := int64(in.Offset)
	if off >= v.size {
		return fuse.ReadResultData(nil), fuse.OK
	}
	dest := buf[:min(int64(in.Size), int64(len(buf)), v.size-off)]
	if off+int64(len(dest)) <= v.im.Size() {
		// Within the image: a sequential stream's read may come from a buffer read ahead.
		b, release, err := v.im.ReadStream(ctx, dest, off)
		if err != nil {
			release()
			n.t.cfg.Logger.Error("read failed", "image", v.im.Digest().String(), "offset", off, "length", len(dest), "err", err)
			return nil, fuse.EIO
		}
		return &streamResult{b: b, release: release}, fuse.OK
	}
	k := 0
	if off < v.im.Size() {
		var err error
		k, err = v.im.ReadAt(ctx, dest, off)
		if err != nil {
			n.t.cfg.Logger.Error("read failed", "image", v.im.Digest().String(), "offset", off, "length", len(dest), "err", err)
			return nil, fuse.EIO
		}
	}
	clear(dest[k:])
	return fuse.ReadResultData(dest), fuse.OK
}

// streamResult is a read's reply in a buffer the cache lends until go-fuse has written it.
// Slices makes go-fuse write it as it is and call Done after the write; a result with Bytes
// alone is copied out and Done at once, when splice is off — too early to give the buffer back.
type streamResult struct {
	b       []byte
	release func()
}

func (r *streamResult) Bytes([]byte) ([]byte, fuse.Status) { return r.b, fuse.OK }
func (r *streamResult) Slices() ([][]byte, fuse.Status)    { return [][]byte{r.b}, fuse.OK }
func (r *streamResult) Size() int                          { return len(r.b) }
func (r *streamResult) Done()                              { r.release() }

func (n *imageNode) lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	v, errno := n.view(ctxOf(cancel))
	if errno != 0 {
		return fuse.Status(errno)
	}
	off, errno := v.seek(int64(in.Offset), in.Whence)
	if errno != 0 {
		return fuse.Status(errno)
	}
	out.Offset = uint64(off)
	return fuse.OK
}

// seek answers SEEK_DATA and SEEK_HOLE on a view from its manifest: hole chunks and the
// zeros past the image are holes (so cp and qemu-img skip them without reading); a
// provisional image's chunks are all data until it has a manifest.
func (v view) seek(off int64, whence uint32) (int64, syscall.Errno) {
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
