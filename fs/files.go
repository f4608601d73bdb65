package fs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// files is the writable area of the mount: every name that is not an image name is a plain
// file kept in a local directory (nova's ephemeral_*, swap_*, *.part, …). Its node ids are
// derived from the backing file's file handle (inode and generation), so every process serving
// the same state derives the same id for the same file, across renames; a process meeting an
// id it does not know rescans the directory. A file unlinked while open is moved to the orphan
// directory until its last release, so the kernel's open file keeps its bytes (as NFS's silly
// rename does) even across a restart of the serving process.
//
// Lock order: files.mu only; no lock is held across file I/O except the fd map's bookkeeping.
type files struct {
	dir       string // the names
	orphans   string // unlinked files still open, by node id
	dirFD     int    // of dir: every name is resolved beneath it (beneath.go)
	orphansFD int    // of orphans

	mu     sync.Mutex
	byNode map[uint64]string   // node id → backing path (in dir or orphans)
	byName map[string]uint64   // name in dir → node id
	fds    map[uint64]*os.File // open backing files by node id
	opens  map[uint64]int      // open kernel file handles by node id (this process's view)
}

// fileNodeBit marks node ids of writable files (image node ids are hashes too; the writable
// table is asked first, and a collision of 63-bit hashes is not a practical concern).
const fileNodeBit = 1 << 63

func openFiles(dir string) (*files, error) {
	orphans := dir + ".orphans"
	for _, d := range []string{dir, orphans} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("writable area %s: %w", d, err)
		}
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("writable area %s: %w", dir, err)
	}
	ofd, err := unix.Open(orphans, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("writable area %s: %w", orphans, err)
	}
	f := &files{dir: dir, orphans: orphans, dirFD: fd, orphansFD: ofd, byNode: map[uint64]string{}, byName: map[string]uint64{},
		fds: map[uint64]*os.File{}, opens: map[uint64]int{}}
	f.mu.Lock()
	f.scanLocked()
	f.mu.Unlock()
	return f, nil
}

// CleanOrphans removes the files unlinked while open that a previous FUSE connection left:
// a new connection holds no open file. The supervisor calls it before mounting.
func CleanOrphans(dir string) error {
	orphans := dir + ".orphans"
	entries, err := os.ReadDir(orphans)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(orphans, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// scanLocked rebuilds the tables from the directories.
func (f *files) scanLocked() {
	clear(f.byNode)
	clear(f.byName)
	for _, d := range []string{f.dir, f.orphans} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			p := filepath.Join(d, e.Name())
			n, err := f.nodeOf(p)
			if err != nil {
				continue
			}
			f.byNode[n] = p
			if d == f.dir {
				f.byName[e.Name()] = n
			}
		}
	}
}

// path returns the backing path of node n, rescanning once if it is unknown (the id was
// handed out by an earlier process).
func (f *files) path(n uint64) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.byNode[n]; ok {
		return p, true
	}
	f.scanLocked()
	p, ok := f.byNode[n]
	return p, ok
}

// add records name (just created, looked up or renamed to) and returns its node id.
func (f *files) add(name string) (uint64, error) {
	p := filepath.Join(f.dir, name)
	n, err := f.nodeOf(p)
	if err != nil {
		return 0, err
	}
	f.mu.Lock()
	if old, ok := f.byName[name]; ok && old != n {
		delete(f.byNode, old)
	}
	f.byName[name] = n
	f.byNode[n] = p
	f.mu.Unlock()
	return n, nil
}

func (f *files) isFile(n uint64) bool {
	if n&fileNodeBit == 0 {
		return false
	}
	_, ok := f.path(n)
	return ok
}

// hold returns an open backing file for node n (opened on first use, kept while the kernel
// holds the file open), held for the caller, who calls released(n) when done: a RELEASE of
// the kernel's last handle, racing with a request that does not name a handle (a utime by
// path), must not close the descriptor under it.
func (f *files) hold(n uint64) (*os.File, syscall.Errno) {
	f.mu.Lock()
	if fd := f.fds[n]; fd != nil {
		f.opens[n]++
		f.mu.Unlock()
		return fd, 0
	}
	f.mu.Unlock()
	p, ok := f.path(n)
	if !ok {
		return nil, syscall.ESTALE
	}
	fd, err := f.openAt(p, os.O_RDWR, 0)
	if err != nil {
		if fd, err = f.openAt(p, os.O_RDONLY, 0); err != nil {
			return nil, errnoOf(err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens[n]++
	if old := f.fds[n]; old != nil {
		fd.Close()
		return old, 0
	}
	f.fds[n] = fd
	return fd, 0
}

func (f *files) opened(n uint64) {
	f.mu.Lock()
	f.opens[n]++
	f.mu.Unlock()
}

// released drops one open (or hold) of node n; at the last one its backing file is closed
// and, if it was unlinked meanwhile, removed.
func (f *files) released(n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens[n]--
	if f.opens[n] > 0 {
		return
	}
	delete(f.opens, n)
	if fd := f.fds[n]; fd != nil {
		fd.Close()
		delete(f.fds, n)
	}
	if p, ok := f.byNode[n]; ok && filepath.Dir(p) == f.orphans {
		f.remove(p)
		delete(f.byNode, n)
	}
}

// unlink removes name; a file still open moves to the orphans until its last release.
func (f *files) unlink(name string) syscall.Errno {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := filepath.Join(f.dir, name)
	n, known := f.byName[name]
	if known && (f.opens[n] > 0 || f.fds[n] != nil) {
		op := filepath.Join(f.orphans, strconv.FormatUint(n, 16))
		if err := f.rename(p, op, 0); err != nil {
			return errnoOf(err)
		}
		f.byNode[n] = op
		delete(f.byName, name)
		return 0
	}
	if err := f.remove(p); err != nil {
		return errnoOf(err)
	}
	if known {
		delete(f.byNode, n)
		delete(f.byName, name)
	}
	return 0
}

// renamed updates the tables after oldName was renamed to newName (replacing it, or with
// exchange swapping the two).
func (f *files) renamed(oldName, newName string, exchange bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	on, oOK := f.byName[oldName]
	nn, nOK := f.byName[newName]
	delete(f.byName, oldName)
	delete(f.byName, newName)
	if nOK && !exchange {
		// The replaced file is gone (if still open, it lives on through its fd).
		delete(f.byNode, nn)
	}
	if oOK {
		f.byName[newName] = on
		f.byNode[on] = filepath.Join(f.dir, newName)
	}
	if exchange && nOK {
		f.byName[oldName] = nn
		f.byNode[nn] = filepath.Join(f.dir, oldName)
	}
}

// forget drops node n from the tables after its file went away (adopted as an image).
func (f *files) forget(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.byName[name]; ok {
		delete(f.byName, name)
		delete(f.byNode, n)
		if fd := f.fds[n]; fd != nil && f.opens[n] <= 0 {
			fd.Close()
			delete(f.fds, n)
		}
	}
}

// count returns the number of named files and their allocated bytes (for status).
func (f *files) usage() (n int, bytes int64) {
	entries, _ := os.ReadDir(f.dir)
	for _, e := range entries {
		var st unix.Stat_t
		if unix.Lstat(filepath.Join(f.dir, e.Name()), &st) == nil {
			n++
			bytes += st.Blocks * 512
		}
	}
	return n, bytes
}

// errnoOf returns the errno inside err (EIO if none).
func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.EIO
}

// FilesDir is where the daemon keeps the writable area of the state directory root.
func FilesDir(stateRoot string) string { return filepath.Join(stateRoot, "base") }
