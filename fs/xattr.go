package fs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Extended attributes of the writable area's files (images answer theirs in fs.go).

// fileXAttr serves getxattr, listxattr, setxattr and removexattr of writable files from
// their backing files.
func (f *FS) fileGetXAttr(n uint64, attr string, dest []byte) (uint32, fuse.Status) {
	p, ok := f.files.path(n)
	if !ok {
		return 0, fuse.Status(syscall.ESTALE)
	}
	k, err := unix.Lgetxattr(p, attr, dest)
	if err != nil {
		return 0, fuse.Status(errnoOf(err))
	}
	return uint32(k), fuse.OK
}

func (f *FS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	defer f.track("listxattr")()
	if f.files == nil || !f.isFileNode(h.NodeId) {
		return 0, fuse.OK // images and the root: none listed
	}
	p, ok := f.files.path(h.NodeId)
	if !ok {
		return 0, fuse.Status(syscall.ESTALE)
	}
	k, err := unix.Llistxattr(p, dest)
	if err != nil {
		return 0, fuse.Status(errnoOf(err))
	}
	return uint32(k), fuse.OK
}

func (f *FS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	defer f.track("setxattr")()
	if f.files == nil || !f.isFileNode(in.NodeId) {
		// Images carry no extended attributes; "not supported" is what libvirt's DAC driver
		// expects of a file system that cannot remember labels.
		return fuse.ENOTSUP
	}
	p, ok := f.files.path(in.NodeId)
	if !ok {
		return fuse.Status(syscall.ESTALE)
	}
	return fuse.Status(errnoOrZero(unix.Lsetxattr(p, attr, data, int(in.Flags))))
}

func (f *FS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	if f.files == nil || !f.isFileNode(h.NodeId) {
		return fuse.ENOTSUP
	}
	p, ok := f.files.path(h.NodeId)
	if !ok {
		return fuse.Status(syscall.ESTALE)
	}
	return fuse.Status(errnoOrZero(unix.Lremovexattr(p, attr)))
}
