package fs

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/fs/names"
)

// area is the writable area's namespace under the root: plain local files under every name
// that is not an image name (files.go holds their table, file.go answers for their nodes).
// Their bytes are the user's: kept on local disk, never verified, never shared. Operations
// that are not idempotent go through the journal first.
type area struct {
	files   *files
	journal *journal
	logger  *slog.Logger
}

// fileTimeout is how long the kernel keeps a writable file's entry and attributes: every
// change goes through this mount, so it could be long; short keeps a rename to an image name
// (adoption) visible at once even if the invalidation is lost.
const fileTimeout = time.Second

// IsImageName reports whether name is in the images' namespace (names.IsImage); every other
// name belongs to the writable area.
func IsImageName(name string) bool { return names.IsImage(name) }

// plain reports whether name is a plain file's name (see rootDir.plain).
func (a *area) plain(name string) bool {
	if !validName(name) {
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
	return a.files.lstat(filepath.Join(a.files.dir, name), &st) == nil
}

// begin journals a request that is not idempotent; it reports whether the request is a
// resend (see journal).
func (a *area) begin(h *fuse.InHeader, op string) (bool, fuse.Status) {
	return a.journal.request(h, op, a.logger)
}

func (a *area) entry(n uint64, p string, out *fuse.EntryOut) fuse.Status {
	var st syscall.Stat_t
	if err := a.files.lstat(p, &st); err != nil {
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

func (a *area) lookup(name string, out *fuse.EntryOut) fuse.Status {
	p := filepath.Join(a.files.dir, name)
	var st syscall.Stat_t
	if err := a.files.lstat(p, &st); err != nil {
		out.SetEntryTimeout(negativeTimeout)
		return fuse.Status(errnoOf(err))
	}
	n, err := a.files.add(name)
	if err != nil {
		return fuse.Status(errnoOf(err))
	}
	return a.entry(n, p, out)
}

// create makes (or opens) plain file name, held open for the kernel's new file handle.
func (a *area) create(in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	resent, st := a.begin(&in.InHeader, "create "+name)
	if !st.Ok() {
		return st
	}
	flags := os.O_RDWR | os.O_CREATE | int(in.Flags)&(os.O_EXCL|os.O_TRUNC)
	if resent {
		flags &^= os.O_EXCL // it may have been created by the process that died
	}
	p := filepath.Join(a.files.dir, name)
	fd, err := a.files.openAt(p, flags, in.Mode&0o7777)
	if err != nil {
		return fuse.Status(errnoOf(err))
	}
	// The file belongs to the caller (this daemon runs as root), with exactly its mode.
	fd.Chown(int(in.Uid), int(in.Gid))
	fd.Chmod(os.FileMode(in.Mode & 0o7777))
	n, err := a.files.add(name)
	if err != nil {
		fd.Close()
		return fuse.Status(errnoOf(err))
	}
	a.files.mu.Lock()
	if old := a.files.fds[n]; old != nil {
		old.Close()
	}
	a.files.fds[n] = fd
	a.files.opens[n]++
	a.files.mu.Unlock()
	if st := a.entry(n, p, &out.EntryOut); !st.Ok() {
		return st
	}
	out.OpenOut.Fh = fhFile
	out.OpenOut.OpenFlags = fileOpenFlags(in.Flags)
	return fuse.OK
}

func (a *area) mknod(in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if in.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return fuse.EPERM // the writable area holds regular files only
	}
	resent, st := a.begin(&in.InHeader, "mknod "+name)
	if !st.Ok() {
		return st
	}
	p := filepath.Join(a.files.dir, name)
	flags := os.O_RDWR | os.O_CREATE | os.O_EXCL
	if resent {
		flags &^= os.O_EXCL
	}
	fd, err := a.files.openAt(p, flags, in.Mode&0o7777)
	if err != nil {
		return fuse.Status(errnoOf(err))
	}
	fd.Chown(int(in.Uid), int(in.Gid))
	fd.Chmod(os.FileMode(in.Mode & 0o7777))
	fd.Close()
	n, err := a.files.add(name)
	if err != nil {
		return fuse.Status(errnoOf(err))
	}
	return a.entry(n, p, out)
}

// link makes name a hard link to a plain file (images have exactly their names: EPERM).
func (a *area) link(in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	if !a.files.isFile(in.Oldnodeid) {
		return fuse.EPERM
	}
	resent, st := a.begin(&in.InHeader, "link "+name)
	if !st.Ok() {
		return st
	}
	op, ok := a.files.path(in.Oldnodeid)
	if !ok {
		return fuse.Status(syscall.ESTALE)
	}
	np := filepath.Join(a.files.dir, name)
	if err := a.files.link(op, np); err != nil && !(resent && errors.Is(err, os.ErrExist)) {
		return fuse.Status(errnoOf(err))
	}
	n, err := a.files.add(name)
	if err != nil {
		return fuse.Status(errnoOf(err))
	}
	return a.entry(n, np, out)
}

func (a *area) unlink(h *fuse.InHeader, name string) fuse.Status {
	resent, st := a.begin(h, "unlink "+name)
	if !st.Ok() {
		return st
	}
	errno := a.files.unlink(name)
	if errno == syscall.ENOENT && resent {
		return fuse.OK // the process that died removed it
	}
	return fuse.Status(errno)
}

// rename renames within the writable area (flags: RENAME_NOREPLACE, RENAME_EXCHANGE).
func (a *area) rename(in *fuse.RenameIn, oldName, newName string) fuse.Status {
	resent, st := a.begin(&in.InHeader, "rename "+oldName+" "+newName)
	if !st.Ok() {
		return st
	}
	if !validName(newName) {
		return fuse.EINVAL
	}
	op := filepath.Join(a.files.dir, oldName)
	np := filepath.Join(a.files.dir, newName)
	err := a.files.rename(op, np, uint(in.Flags))
	if err != nil {
		if resent && errors.Is(err, syscall.ENOENT) {
			var st syscall.Stat_t
			if a.files.lstat(np, &st) == nil {
				a.files.renamed(oldName, newName, false)
				return fuse.OK // applied by the process that died
			}
		}
		return fuse.Status(errnoOf(err))
	}
	a.files.renamed(oldName, newName, in.Flags&unix.RENAME_EXCHANGE != 0)
	return fuse.OK
}

// entries lists the writable area for readdir.
func (a *area) entries() []fuse.DirEntry {
	des, _ := os.ReadDir(a.files.dir)
	sort.Slice(des, func(i, j int) bool { return des[i].Name() < des[j].Name() })
	var out []fuse.DirEntry
	for _, d := range des {
		n, err := a.files.add(d.Name())
		if err != nil {
			continue
		}
		out = append(out, fuse.DirEntry{Name: d.Name(), Mode: fuse.S_IFREG, Ino: n})
	}
	return out
}

// statFs reports the area's file system (unchanged if it cannot be read).
func (a *area) statFs(out *fuse.StatfsOut) {
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(a.files.dirFD, &st); err == nil {
		out.Blocks, out.Bfree, out.Bavail = st.Blocks, st.Bfree, st.Bavail
		out.Files, out.Ffree = st.Files, st.Ffree
		out.Bsize, out.Frsize = uint32(st.Bsize), uint32(st.Frsize)
	}
}

func (a *area) fsyncDir() syscall.Errno { return errnoOrZero(unix.Fsync(a.files.dirFD)) }
