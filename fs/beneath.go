package fs

import (
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Every name of the writable area is resolved beneath the area's directory descriptors
// (files.dirFD, files.orphansFD) with *at system calls that follow no symbolic link
// (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW, linkat without AT_SYMLINK_FOLLOW), and only names that
// are one path component get there (validName): a name never joins a path someone else chose,
// and a symbolic link planted in the state directory is never followed out of it.

// validName reports whether name may name a file of the writable area: one component, not
// "." or "..", no NUL, at most 255 bytes (what the kernel sends; checked all the same).
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= maxNameLen && !strings.ContainsAny(name, "/\x00")
}

// maxNameLen is the longest name of the writable area (the local file system's NAME_MAX).
const maxNameLen = 255

// at returns the directory descriptor and the name in it of a backing path (in dir or orphans).
func (f *files) at(p string) (int, string) {
	if filepath.Dir(p) == f.orphans {
		return f.orphansFD, filepath.Base(p)
	}
	return f.dirFD, filepath.Base(p)
}

// openAt opens backing path p without following a symbolic link.
func (f *files) openAt(p string, flags int, mode uint32) (*os.File, error) {
	dfd, name := f.at(p)
	fd, err := unix.Openat(dfd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// lstat stats backing path p itself (a symbolic link is not followed).
func (f *files) lstat(p string, st *syscall.Stat_t) error {
	dfd, name := f.at(p)
	// O_PATH|O_NOFOLLOW opens the name itself, whatever it is (syscall has no fstatat here).
	fd, err := unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	defer unix.Close(fd)
	return syscall.Fstat(fd, st)
}

// remove removes backing path p.
func (f *files) remove(p string) error {
	dfd, name := f.at(p)
	if err := unix.Unlinkat(dfd, name, 0); err != nil {
		return &os.PathError{Op: "remove", Path: p, Err: err}
	}
	return nil
}

// rename renames backing path op to np (flags: renameat2's).
func (f *files) rename(op, np string, flags uint) error {
	odfd, oname := f.at(op)
	ndfd, nname := f.at(np)
	return unix.Renameat2(odfd, oname, ndfd, nname, flags)
}

// link makes np a hard link to op (op itself, never what a symbolic link names).
func (f *files) link(op, np string) error {
	odfd, oname := f.at(op)
	ndfd, nname := f.at(np)
	if err := unix.Linkat(odfd, oname, ndfd, nname, 0); err != nil {
		return &os.LinkError{Op: "link", Old: op, New: np, Err: err}
	}
	return nil
}

// nodeOf derives the node id of the file at backing path p from its file handle (or, on a
// file system without handles, its inode number).
func (f *files) nodeOf(p string) (uint64, error) {
	dfd, name := f.at(p)
	h := fnv.New64a()
	fh, _, err := unix.NameToHandleAt(dfd, name, 0) // 0: a symbolic link is not followed
	if err == nil {
		fmt.Fprintf(h, "%d:", fh.Type())
		h.Write(fh.Bytes())
	} else {
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return 0, err
		}
		fmt.Fprintf(h, "ino:%d", st.Ino)
	}
	return h.Sum64() | fileNodeBit, nil
}
