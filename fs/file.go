package fs

import (
	"errors"
	"io"
	"os"
	"strconv"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// fileNode is the kind of a writable file's node id: the request's id names the file in the
// area's table (files.go), and every operation is served from the backing file — opened
// beneath the area's directory without following a link (beneath.go), held for the
// operation (files.hold) so a concurrent release cannot close it underneath. It is one
// pointer: handing it out allocates nothing.
type fileNode struct{ files *files }

func (n fileNode) getAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	return n.attr(in.NodeId, out)
}

func (n fileNode) attr(ino uint64, out *fuse.AttrOut) fuse.Status {
	var st syscall.Stat_t
	var err error
	if fd := n.openFD(ino); fd != nil {
		err = syscall.Fstat(int(fd.Fd()), &st)
	} else if p, ok := n.files.path(ino); ok {
		err = n.files.lstat(p, &st)
	} else {
		return fuse.Status(syscall.ESTALE)
	}
	if err != nil {
		return fuse.Status(errnoOf(err))
	}
	out.Attr.FromStat(&st)
	out.Attr.Ino = ino
	out.SetTimeout(fileTimeout)
	return fuse.OK
}

// openFD returns node ino's open backing file if this process has one (an unlinked file is
// reachable only through it).
func (n fileNode) openFD(ino uint64) *os.File {
	n.files.mu.Lock()
	defer n.files.mu.Unlock()
	return n.files.fds[ino]
}

// setAttr applies chmod, chown, truncate and utime to the backing file.
func (n fileNode) setAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	fd, errno := n.files.hold(in.NodeId)
	if errno != 0 {
		return fuse.Status(errno)
	}
	defer n.files.released(in.NodeId)
	if m, ok := in.GetMode(); ok {
		if err := fd.Chmod(os.FileMode(m) & os.ModePerm); err != nil {
			return fuse.Status(errnoOf(err))
		}
		if m&0o7000 != 0 {
			if err := syscall.Fchmod(int(fd.Fd()), m&0o7777); err != nil {
				return fuse.Status(errnoOf(err))
			}
		}
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		u, g := -1, -1
		if uok {
			u = int(uid)
		}
		if gok {
			g = int(gid)
		}
		if err := fd.Chown(u, g); err != nil {
			return fuse.Status(errnoOf(err))
		}
	}
	if sz, ok := in.GetSize(); ok {
		if err := fd.Truncate(int64(sz)); err != nil {
			return fuse.Status(errnoOf(err))
		}
	}
	if in.Valid&(fuse.FATTR_ATIME|fuse.FATTR_MTIME) != 0 {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if a, ok := in.GetATime(); ok {
			ts[0] = unix.NsecToTimespec(a.UnixNano())
		}
		if m, ok := in.GetMTime(); ok {
			ts[1] = unix.NsecToTimespec(m.UnixNano())
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(fd.Fd())), ts, 0); err != nil {
			return fuse.Status(errnoOf(err))
		}
	}
	return n.attr(in.NodeId, out)
}

// Extended attributes are the backing file's.

func (n fileNode) getXAttr(h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	p, ok := n.files.path(h.NodeId)
	if !ok {
		return 0, fuse.Status(syscall.ESTALE)
	}
	k, err := unix.Lgetxattr(p, attr, dest)
	if err != nil {
		return 0, fuse.Status(errnoOf(err))
	}
	return uint32(k), fuse.OK
}

func (n fileNode) listXAttr(h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	p, ok := n.files.path(h.NodeId)
	if !ok {
		return 0, fuse.Status(syscall.ESTALE)
	}
	k, err := unix.Llistxattr(p, dest)
	if err != nil {
		return 0, fuse.Status(errnoOf(err))
	}
	return uint32(k), fuse.OK
}

func (n fileNode) setXAttr(in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	p, ok := n.files.path(in.NodeId)
	if !ok {
		return fuse.Status(syscall.ESTALE)
	}
	return fuse.Status(errnoOrZero(unix.Lsetxattr(p, attr, data, int(in.Flags))))
}

func (n fileNode) removeXAttr(h *fuse.InHeader, attr string) fuse.Status {
	p, ok := n.files.path(h.NodeId)
	if !ok {
		return fuse.Status(syscall.ESTALE)
	}
	return fuse.Status(errnoOrZero(unix.Lremovexattr(p, attr)))
}

func (n fileNode) open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	fd, errno := n.files.hold(in.NodeId)
	if errno != 0 {
		return fuse.Status(errno)
	}
	defer n.files.released(in.NodeId)
	if in.Flags&syscall.O_TRUNC != 0 {
		if err := fd.Truncate(0); err != nil {
			return fuse.Status(errnoOf(err))
		}
	}
	n.files.opened(in.NodeId)
	out.Fh = fhFile
	out.OpenFlags = fileOpenFlags(in.Flags)
	return fuse.OK
}

func fileOpenFlags(flags uint32) uint32 {
	if flags&syscall.O_DIRECT != 0 {
		return fuse.FOPEN_DIRECT_IO
	}
	return 0
}

func (n fileNode) release(cancel <-chan struct{}, in *fuse.ReleaseIn) { n.files.released(in.NodeId) }

func (n fileNode) read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	fd, errno := n.files.hold(in.NodeId)
	if errno != 0 {
		return nil, fuse.Status(errno)
	}
	defer n.files.released(in.NodeId)
	k, err := fd.ReadAt(buf[:min(int(in.Size), len(buf))], int64(in.Offset))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fuse.Status(errnoOf(err))
	}
	return fuse.ReadResultData(buf[:k]), fuse.OK
}

func (n fileNode) write(in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	fd, errno := n.files.hold(in.NodeId)
	if errno != 0 {
		return 0, fuse.Status(errno)
	}
	defer n.files.released(in.NodeId)
	k, err := fd.WriteAt(data, int64(in.Offset))
	if err != nil {
		return uint32(k), fuse.Status(errnoOf(err))
	}
	return uint32(k), fuse.OK
}

func (n fileNode) fsync(in *fuse.FsyncIn) fuse.Status {
	fd, errno := n.files.hold(in.NodeId)
	if errno != 0 {
		return fuse.Status(errno)
	}
	defer n.files.released(in.NodeId)
	var err error
	if in.FsyncFlags&1 != 0 {
		err = unix.Fdatasync(int(fd.Fd()))
	} else {
		err = fd.Sync()
	}
	return fuse.Status(errnoOrZero(err))
}

func (n fileNode) fallocate(in *fuse.FallocateIn) fuse.Status {
	fd, errno := n.files.hold(in.NodeId)
	if errno != 0 {
		return fuse.Status(errno)
	}
	defer n.files.released(in.NodeId)
	return fuse.Status(errnoOrZero(unix.Fallocate(int(fd.Fd()), in.Mode, int64(in.Offset), int64(in.Length))))
}

func (n fileNode) lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	fd, errno := n.files.hold(in.NodeId)
	if errno != 0 {
		return fuse.Status(errno)
	}
	defer n.files.released(in.NodeId)
	off, err := unix.Seek(int(fd.Fd()), int64(in.Offset), int(in.Whence))
	if err != nil {
		return fuse.Status(errnoOf(err))
	}
	out.Offset = uint64(off)
	return fuse.OK
}

func errnoOrZero(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return errnoOf(err)
}
