package fs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// readOnly is the answers of a node that takes no writes and carries no extended
// attributes: an image's view, the root, an unknown id. Writes answer EROFS, fsync succeeds
// (images are immutable and durable), and setxattr ENOTSUP — what libvirt's DAC driver
// expects of a file system that cannot remember labels.
type readOnly struct{}

func (readOnly) getXAttr(h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	return 0, fuse.Status(syscall.ENODATA)
}

func (readOnly) listXAttr(h *fuse.InHeader, dest []byte) (uint32, fuse.Status) { return 0, fuse.OK }

func (readOnly) setXAttr(in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	return fuse.ENOTSUP
}

func (readOnly) removeXAttr(h *fuse.InHeader, attr string) fuse.Status { return fuse.ENOTSUP }

func (readOnly) write(in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	return 0, fuse.Status(syscall.EROFS)
}

func (readOnly) fsync(in *fuse.FsyncIn) fuse.Status { return fuse.OK }

func (readOnly) fallocate(in *fuse.FallocateIn) fuse.Status { return fuse.Status(syscall.EROFS) }

// openReadOnly refuses an open for writing (EROFS) and a caller the mount does not serve
// (EACCES: an open image is pinned, in use, until released).
func openReadOnly(cfg *Config, in *fuse.OpenIn) fuse.Status {
	if in.Flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND|syscall.O_CREAT) != 0 {
		return fuse.Status(syscall.EROFS)
	}
	if cfg.deny(&in.InHeader, "open") {
		return fuse.EACCES
	}
	return fuse.OK
}

// unknownNode answers for a node id no kind claims: one an earlier process handed out on
// other state, or a view of an image removed since. It is read-only, and whatever needs the
// node answers ENOENT (logged: the kernel should not hold such an id).
type unknownNode struct {
	readOnly
	cfg *Config
}

func (u *unknownNode) gone(ino uint64) fuse.Status {
	u.cfg.Logger.Error("request for an unknown node id", "ino", ino)
	return fuse.ENOENT
}

func (u *unknownNode) getAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	return u.gone(in.NodeId)
}

func (u *unknownNode) setAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if in.Valid&(fuse.FATTR_MODE|fuse.FATTR_UID|fuse.FATTR_GID|fuse.FATTR_SIZE) != 0 {
		return fuse.Status(syscall.EROFS) // as an image would answer
	}
	return u.gone(in.NodeId)
}

func (u *unknownNode) open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if st := openReadOnly(u.cfg, in); !st.Ok() {
		return st
	}
	return u.gone(in.NodeId)
}

func (u *unknownNode) release(cancel <-chan struct{}, in *fuse.ReleaseIn) { u.gone(in.NodeId) }

func (u *unknownNode) read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	return nil, u.gone(in.NodeId)
}

func (u *unknownNode) lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	return u.gone(in.NodeId)
}
