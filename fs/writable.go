package fs

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/fs/names"
)

// The FUSE operations of the writable area (files.go): plain local files under every name
// that is not an image name. Their bytes are the user's: kept on local disk, never verified,
// never shared. Operations that are not idempotent go through the journal first.

// fileTimeout is how long the kernel keeps a writable file's entry and attributes: every
// change goes through this mount, so it could be long; short keeps a rename to an image name
// (adoption) visible at once even if the invalidation is lost.
const fileTimeout = time.Second

// IsImageName reports whether name is in the images' namespace (names.IsImage); every other
// name belongs to the writable area.
func IsImageName(name string) bool { return names.IsImage(name) }

func (f *FS) fileEntry(n uint64, p string, out *fuse.EntryOut) fuse.Status {
	var st syscall.Stat_t
	if err := f.files.lstat(p, &st); err != nil {
		return fuse.Status(errnoOf(err))
	}
	out.NodeId = n
	out.Generation = 1
	out.Attr.FromStat(&st)
	out.Attr.Ino = n
	out.SetEntryTimeout(fileTimeout)
	out.SetAttrTimeout(fileTimeout)
	return fuse.OK
}

func (f *FS) fileAttr(n uint64, out *fuse.AttrOut) fuse.Status {
	var st syscall.Stat_t
	var err error
	if fd := f.openFD(n); fd != nil {
		err = syscall.Fstat(int(fd.Fd()), &st)
	} else if p, ok := f.files.path(n); ok {
		err = f.files.lstat(p, &st)
	} else {
		return fuse.Status(syscall.ESTALE)
	}
	if err != nil {
		return fuse.Status(errnoOf(err))
	}
	out.Attr.FromStat(&st)
	out.Attr.Ino = n
	out.SetTimeout(fileTimeout)
	return fuse.OK
}

// openFD returns node n's open backing file if this process has one (an unlinked file is
// reachable only through it).
func (f *FS) openFD(n uint64) *os.File {
	f.files.mu.Lock()
	defer f.files.mu.Unlock()
	return f.files.fds[n]
}

func (f *FS) lookupFile(name string, out *fuse.EntryOut) fuse.Status {
	p := filepath.Join(f.files.dir, name)
	var st syscall.Stat_t
	if err := f.files.lstat(p, &st); err != nil {
		out.SetEntryTimeout(negativeTimeout)
		return fuse.Status(errnoOf(err))
	}
	n, err := f.files.add(name)
	if err != nil {
		return fuse.Status(errnoOf(err))
	}
	return f.fileEntry(n, p, out)
}

// begin journals a request that is not idempotent; it reports whether the request is a
// resend (see journal).
func (f *FS) begin(h *fuse.InHeader, op string) (bool, fuse.Status) {
	resent, err := f.journal.begin(h.Unique, op)
	if err != nil {
		f.cfg.Logger.Error("writable area: cannot journal a request", "op", op, "err", err)
		return false, fuse.EIO
	}
	return resent, fuse.OK
}

// writableName checks that name may be created in the writable area.
func (f *FS) writableName(parent uint64, name string) fuse.Status {
	if parent != fuse.FUSE_ROOT_ID {
		return fuse.ENOTDIR
	}
	if f.files == nil {
		return fuse.Status(syscall.EROFS)
	}
	if len(name) > maxNameLen {
		return fuse.Status(syscall.ENAMETOOLONG)
	}
	if !validName(name) {
		return fuse.EINVAL
	}
	if IsImageName(name) {
		// Image names are content: they come from origins or from adoption (rename). A nova
		// name no image has may be written directly, as nova does for kernels and ramdisks
		// (fetch_raw_image): it is then a plain file, as in nova's own _base.
		n, _ := ParseName(name)
		if !n.IsNova() || n.ViewGiB != 0 {
			return fuse.Status(syscall.EROFS)
		}
		if _, ok, err := resolve(context.Background(), f.cfg.Resolver, n.Ref); ok || err != nil && !chunkstore.IsNotFound(err) {
			return fuse.Status(syscall.EROFS)
		}
	}
	return fuse.OK
}

// plain reports whether name is a plain file's name in the writable area, the one place that
// decides it: every name outside the images' namespace, and a nova name whose plain file exists
// (written directly, as nova does for kernels; it takes precedence over an image of that name).
func (f *FS) plain(name string) bool {
	if f.files == nil || !validName(name) {
		return false
	}
	if !IsImageName(name) {
		return true
	}
	n, _ := ParseName(name)
	if !n.IsNova() || n.ViewGiB != 0 {
		return false
	}
	var st syscall.Stat_t
	return f.files.lstat(filepath.Join(f.files.dir, name), &st) == nil
}

func (f *FS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	defer f.track("create")()
	if f.deny(&in.InHeader, "create") {
		return fuse.EACCES
	}
	if st := f.writableName(in.NodeId, name); !st.Ok() {
		return st
	}
	resent, st := f.begin(&in.InHeader, "create "+name)
	if !st.Ok() {
		return st
	}
	flags := os.O_RDWR | os.O_CREATE | int(in.Flags)&(os.O_EXCL|os.O_TRUNC)
	if resent {
		flags &^= os.O_EXCL // it may have been created by the process that died
	}
	p := filepath.Join(f.files.dir, name)
	fd, err := f.files.openAt(p, flags, in.Mode&0o7777)
	if err != nil {
		return fuse.Status(errnoOf(err))
	}
	// The file belongs to the caller (this daemon runs as root), with exactly its mode.
	fd.Chown(int(in.Uid), int(in.Gid))
	fd.Chmod(os.FileMode(in.Mode & 0o7777))
	n, err := f.files.add(name)
	if err != nil {
		fd.Close()
		return fuse.Status(errnoOf(err))
	}
	f.files.mu.Lock()
	if old := f.files.fds[n]; old != nil {
		old.Close()
	}
	f.files.fds[n] = fd
	f.files.opens[n]++
	f.files.mu.Unlock()
	if st := f.fileEntry(n, p, &out.EntryOut); !st.Ok() {
		return st
	}
	out.OpenOut.OpenFlags = fileOpenFlags(in.Flags)
	return fuse.OK
}

func fileOpenFlags(flags uint32) uint32 {
	if flags&syscall.O_DIRECT != 0 {
		return fuse.FOPEN_DIRECT_IO
	}
	return 0
}

func (f *FS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	defer f.track("mknod")()
	if f.deny(&in.InHeader, "mknod") {
		return fuse.EACCES
	}
	if st := f.writableName(in.NodeId, name); !st.Ok() {
		return st
	}
	if in.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return fuse.EPERM // the writable area holds regular files only
	}
	resent, st := f.begin(&in.InHeader, "mknod "+name)
	if !st.Ok() {
		return st
	}
	p := filepath.Join(f.files.dir, name)
	flags := os.O_RDWR | os.O_CREATE | os.O_EXCL
	if resent {
		flags &^= os.O_EXCL
	}
	fd, err := f.files.openAt(p, flags, in.Mode&0o7777)
	if err != nil {
		return fuse.Status(errnoOf(err))
	}
	fd.Chown(int(in.Uid), int(in.Gid))
	fd.Chmod(os.FileMode(in.Mode & 0o7777))
	fd.Close()
	n, err := f.files.add(name)
	if err != nil {
		return fuse.Status(errnoOf(err))
	}
	return f.fileEntry(n, p, out)
}

func (f *FS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	if st := f.writableName(in.NodeId, name); !st.Ok() {
		return st
	}
	return fuse.EPERM // `_base` is flat, as nova keeps it
}

func (f *FS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	if st := f.writableName(h.NodeId, name); !st.Ok() {
		return st
	}
	return fuse.EPERM
}

func (f *FS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if h.NodeId != fuse.FUSE_ROOT_ID {
		return fuse.ENOTDIR
	}
	return fuse.ENOTDIR // no directories below the root
}

func (f *FS) openFile(n uint64, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	fd, errno := f.files.hold(n)
	if errno != 0 {
		return fuse.Status(errno)
	}
	defer f.files.released(n)
	if in.Flags&syscall.O_TRUNC != 0 {
		if err := fd.Truncate(0); err != nil {
			return fuse.Status(errnoOf(err))
		}
	}
	f.files.opened(n)
	out.OpenFlags = fileOpenFlags(in.Flags)
	return fuse.OK
}

func (f *FS) readFile(n uint64, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	fd, errno := f.files.hold(n)
	if errno != 0 {
		return nil, fuse.Status(errno)
	}
	defer f.files.released(n)
	k, err := fd.ReadAt(buf[:min(int(in.Size), len(buf))], int64(in.Offset))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fuse.Status(errnoOf(err))
	}
	return fuse.ReadResultData(buf[:k]), fuse.OK
}

func (f *FS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	defer f.track("write")()
	if f.files == nil || !f.files.isFile(in.NodeId) {
		return 0, fuse.Status(syscall.EROFS)
	}
	fd, errno := f.files.hold(in.NodeId)
	if errno != 0 {
		return 0, fuse.Status(errno)
	}
	defer f.files.released(in.NodeId)
	k, err := fd.WriteAt(data, int64(in.Offset))
	if err != nil {
		return uint32(k), fuse.Status(errnoOf(err))
	}
	return uint32(k), fuse.OK
}

func (f *FS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	defer f.track("fsync")()
	if f.files == nil || !f.files.isFile(in.NodeId) {
		return fuse.OK // images are immutable and durable
	}
	fd, errno := f.files.hold(in.NodeId)
	if errno != 0 {
		return fuse.Status(errno)
	}
	defer f.files.released(in.NodeId)
	var err error
	if in.FsyncFlags&1 != 0 {
		err = unix.Fdatasync(int(fd.Fd()))
	} else {
		err = fd.Sync()
	}
	return fuse.Status(errnoOrZero(err))
}

func (f *FS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	if f.files != nil {
		return fuse.Status(errnoOrZero(unix.Fsync(f.files.dirFD)))
	}
	return fuse.OK
}

func (f *FS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status { return fuse.OK }

func (f *FS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	defer f.track("fallocate")()
	if f.files == nil || !f.files.isFile(in.NodeId) {
		return fuse.Status(syscall.EROFS)
	}
	fd, errno := f.files.hold(in.NodeId)
	if errno != 0 {
		return fuse.Status(errno)
	}
	defer f.files.released(in.NodeId)
	return fuse.Status(errnoOrZero(unix.Fallocate(int(fd.Fd()), in.Mode, int64(in.Offset), int64(in.Length))))
}

func (f *FS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	defer f.track("lseek")()
	if !f.isFileNode(in.NodeId) {
		v, st := f.nodeView(cancel, in.NodeId)
		if !st.Ok() {
			return st
		}
		off, errno := v.seek(int64(in.Offset), in.Whence)
		if errno != 0 {
			return fuse.Status(errno)
		}
		out.Offset = uint64(off)
		return fuse.OK
	}
	fd, errno := f.files.hold(in.NodeId)
	if errno != 0 {
		return fuse.Status(errno)
	}
	defer f.files.released(in.NodeId)
	off, err := unix.Seek(int(fd.Fd()), int64(in.Offset), int(in.Whence))
	if err != nil {
		return fuse.Status(errnoOf(err))
	}
	out.Offset = uint64(off)
	return fuse.OK
}

// setFileAttr applies chmod, chown, truncate and utime to a writable file.
func (f *FS) setFileAttr(in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	n := in.NodeId
	fd, errno := f.files.hold(n)
	if errno != 0 {
		return fuse.Status(errno)
	}
	defer f.files.released(n)
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
	return f.fileAttr(n, out)
}

func (f *FS) unlinkFile(h *fuse.InHeader, name string) fuse.Status {
	resent, st := f.begin(h, "unlink "+name)
	if !st.Ok() {
		return st
	}
	errno := f.files.unlink(name)
	if errno == syscall.ENOENT && resent {
		return fuse.OK // the process that died removed it
	}
	return fuse.Status(errno)
}

// renameFiles renames within the writable area (flags: RENAME_NOREPLACE, RENAME_EXCHANGE).
func (f *FS) renameFiles(in *fuse.RenameIn, oldName, newName string) fuse.Status {
	resent, st := f.begin(&in.InHeader, "rename "+oldName+" "+newName)
	if !st.Ok() {
		return st
	}
	if !validName(newName) {
		return fuse.EINVAL
	}
	op := filepath.Join(f.files.dir, oldName)
	np := filepath.Join(f.files.dir, newName)
	err := f.files.rename(op, np, uint(in.Flags))
	if err != nil {
		if resent && errors.Is(err, syscall.ENOENT) {
			var st syscall.Stat_t
			if f.files.lstat(np, &st) == nil {
				f.files.renamed(oldName, newName, false)
				return fuse.OK // applied by the process that died
			}
		}
		return fuse.Status(errnoOf(err))
	}
	f.files.renamed(oldName, newName, in.Flags&unix.RENAME_EXCHANGE != 0)
	return fuse.OK
}

func (f *FS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	defer f.track("link")()
	if st := f.writableName(in.NodeId, name); !st.Ok() {
		return st
	}
	if !f.files.isFile(in.Oldnodeid) {
		return fuse.EPERM // images have exactly their names
	}
	resent, st := f.begin(&in.InHeader, "link "+name)
	if !st.Ok() {
		return st
	}
	op, ok := f.files.path(in.Oldnodeid)
	if !ok {
		return fuse.Status(syscall.ESTALE)
	}
	np := filepath.Join(f.files.dir, name)
	if err := f.files.link(op, np); err != nil && !(resent && errors.Is(err, os.ErrExist)) {
		return fuse.Status(errnoOf(err))
	}
	n, err := f.files.add(name)
	if err != nil {
		return fuse.Status(errnoOf(err))
	}
	return f.fileEntry(n, np, out)
}

func errnoOrZero(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return errnoOf(err)
}
