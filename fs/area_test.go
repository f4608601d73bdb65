package fs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/chunkstore/storetest"
	"github.com/basefs/basefs/chunkstore/testenv"
)

// TestWritableAreaIsPlainFiles: every name that is not an image name is an ordinary local
// read-write file, with the operations nova, qemu-img, mkfs and mkswap use.
func TestWritableAreaIsPlainFiles(t *testing.T) {
	e := newEnv(t, envOptions{writable: true})
	p := e.path("ephemeral_1_0706d66")
	data := storetest.Data(3, 3<<20+17)
	if err := os.WriteFile(p, data, 0o640); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
	if _, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); !errors.Is(err, os.ErrExist) {
		t.Fatalf("O_EXCL on an existing file: %v", err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o640 || fi.Size() != int64(len(data)) {
		t.Fatalf("stat: %v %d", fi.Mode(), fi.Size())
	}
	// O_DIRECT writes and reads (qemu's cache=none), fsync, fallocate, truncate.
	f, err := os.OpenFile(p, os.O_RDWR|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatalf("O_DIRECT open: %v", err)
	}
	buf := alignedBuf(4096)
	copy(buf, "direct")
	if _, err := f.WriteAt(buf, 8192); err != nil {
		t.Fatalf("O_DIRECT write: %v", err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync: %v", err)
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, 8<<20); err != nil {
		t.Fatalf("fallocate: %v", err)
	}
	f.Close()
	if err := os.Truncate(p, 1<<20); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Size() != 1<<20 {
		t.Fatalf("size after truncate: %d", fi.Size())
	}
	// Metadata: chmod, chown, utime, xattrs, link, rename, unlink.
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 1234, 5678); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	if err := os.Chtimes(p, past, past); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	syscall.Stat(p, &st)
	if st.Mode&0o777 != 0o600 || st.Uid != 1234 || st.Gid != 5678 || st.Mtim.Sec != past.Unix() {
		t.Fatalf("after chmod/chown/utime: mode %o uid %d gid %d mtime %d", st.Mode&0o777, st.Uid, st.Gid, st.Mtim.Sec)
	}
	if err := unix.Setxattr(p, "user.basefs-test", []byte("v"), 0); err != nil {
		t.Fatalf("setxattr: %v", err)
	}
	if b := make([]byte, 8); func() bool {
		n, err := unix.Getxattr(p, "user.basefs-test", b)
		return err != nil || string(b[:n]) != "v"
	}() {
		t.Fatal("getxattr did not return what was set")
	}
	if err := os.Link(p, e.path("hardlink")); err != nil {
		t.Fatalf("link: %v", err)
	}
	if err := os.Rename(e.path("hardlink"), e.path("renamed")); err != nil {
		t.Fatalf("rename: %v", err)
	}
	// Unlinked while open: the open file keeps its bytes until closed.
	g, _ := os.Open(e.path("renamed"))
	if err := os.Remove(e.path("renamed")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.path("renamed")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after unlink: %v", err)
	}
	head := make([]byte, 100)
	if _, err := g.ReadAt(head, 0); err != nil || !bytes.Equal(head, data[:100]) {
		t.Fatalf("read of an unlinked open file: %v", err)
	}
	g.Close()
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(e.mnt, &sfs); err != nil || sfs.Blocks == 0 || sfs.Bavail == 0 {
		t.Fatalf("statfs: %v %+v", err, sfs)
	}
	names, _ := os.ReadDir(e.mnt)
	if len(names) != 1 || names[0].Name() != "ephemeral_1_0706d66" {
		t.Fatalf("readdir: %v", names)
	}
	// The tools nova runs on them.
	testenv.NeedBinary(t, "qemu-img", "mkfs.ext4", "mkswap")
	eph, swap := e.path("ephemeral_1_abc"), e.path("swap_64")
	run(t, "qemu-img", "create", "-q", "-f", "raw", eph, "256M")
	run(t, "mkfs.ext4", "-q", "-F", "-L", "ephemeral0", eph)
	run(t, "qemu-img", "create", "-q", "-f", "raw", swap, "64M")
	run(t, "mkswap", swap)
	overlay := filepath.Join(t.TempDir(), "disk.local")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", eph, "-F", "raw", overlay)
	if out := run(t, "qemu-img", "info", overlay); !strings.Contains(out, "backing file: "+eph) {
		t.Fatalf("overlay on a writable file:\n%s", out)
	}
	run(t, "e2fsck", "-n", "-f", eph) // the file system mkfs wrote reads back intact
}

// TestWritableAreaNames: image names stay images, odd names get the right errors.
func TestWritableAreaNames(t *testing.T) {
	e := newEnv(t, envOptions{writable: true})
	d, _ := e.importImage(1<<20, 1, [2]int64{0, 1 << 20})
	img := e.path(d.String())
	os.Stat(img)
	notImage := strings.Repeat("ab", 32) // a digest no image has
	for name, want := range map[string]error{
		notImage:                           syscall.EROFS,
		strings.Repeat("ef", 20):           nil, // a nova name of no image: nova writes kernels so
		strings.Repeat("cd", 20) + "_3":    syscall.EROFS,
		strings.Repeat("x", 256):           syscall.ENAMETOOLONG,
		"abc_5":                            nil, // short hex: not an image name
		strings.Repeat("cd", 20) + ".part": nil,
	} {
		f, err := os.OpenFile(e.path(name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if want == nil && err != nil || want != nil && !errors.Is(err, want) {
			t.Errorf("create %.50q: %v, want %v", name, err, want)
		}
		if f != nil {
			f.Close()
		}
	}
	// nova's direct write of a base (fetch_raw_image of a kernel): a plain file under nova's
	// name, read back, utime'd and removed as nova would.
	nova := e.path(strings.Repeat("cd", 20))
	if err := os.WriteFile(nova, []byte("kernel"), 0o644); err != nil {
		t.Fatalf("nova's direct write of a base: %v", err)
	}
	if b, err := os.ReadFile(nova); err != nil || string(b) != "kernel" {
		t.Fatalf("read back %q %v", b, err)
	}
	if err := os.Chtimes(nova, time.Now(), time.Now()); err != nil {
		t.Fatalf("utime: %v", err)
	}
	if err := os.Remove(nova); err != nil {
		t.Fatalf("unlink of nova's plain base: %v", err)
	}
	if _, err := os.Stat(nova); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after unlink: %v", err)
	}
	if err := os.Mkdir(e.path("dir"), 0o755); !errors.Is(err, syscall.EPERM) {
		t.Errorf("mkdir: %v, want EPERM", err)
	}
	if err := os.Symlink("/etc/passwd", e.path("link")); !errors.Is(err, syscall.EPERM) {
		t.Errorf("symlink: %v, want EPERM", err)
	}
	if err := os.Rename(img, e.path("stolen")); !errors.Is(err, syscall.EROFS) {
		t.Errorf("rename of an image: %v, want EROFS", err)
	}
	if err := os.Link(img, e.path("linked")); !errors.Is(err, syscall.EPERM) {
		t.Errorf("link of an image: %v, want EPERM", err)
	}
	if _, err := os.Stat(e.path("..")); err != nil {
		t.Errorf("..: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.state.Root(), "base", "abc_5")); err != nil {
		t.Errorf("the writable file is not kept under the state directory: %v", err)
	}
}

// TestResendIsNotAppliedTwice: a create, rename or unlink resent after the process that
// held it died (same request id, another process) succeeds instead of EEXIST/ENOENT; the
// same operation under a new id is refused as it should be.
func TestResendIsNotAppliedTwice(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "base")
	newFS := func() *FS {
		f, err := New(Config{Files: dir})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	hdr := func(u uint64) fuse.InHeader { return fuse.InHeader{Unique: u, NodeId: fuse.FUSE_ROOT_ID} }
	first := newFS()
	var co fuse.CreateOut
	if st := first.Create(nil, &fuse.CreateIn{InHeader: hdr(10), Flags: uint32(os.O_CREATE | os.O_EXCL | os.O_RDWR), Mode: 0o644}, "disk.part", &co); !st.Ok() {
		t.Fatalf("create: %v", st)
	}
	if st := first.Rename(nil, &fuse.RenameIn{InHeader: hdr(12), Newdir: fuse.FUSE_ROOT_ID}, "disk.part", "disk"); !st.Ok() {
		t.Fatalf("rename: %v", st)
	}
	if st := first.Unlink(nil, &fuse.InHeader{Unique: 14, NodeId: fuse.FUSE_ROOT_ID}, "disk"); !st.Ok() {
		t.Fatalf("unlink: %v", st)
	}
	// Another process (after a crash) gets the same three requests resent, in the state the
	// first left — then the same operations under new ids.
	second := newFS()
	os.WriteFile(filepath.Join(dir, "disk.part"), nil, 0o644) // as if the crash came before the rename
	if st := second.Create(nil, &fuse.CreateIn{InHeader: hdr(10 | uniqueResend), Flags: uint32(os.O_CREATE | os.O_EXCL | os.O_RDWR), Mode: 0o644}, "disk.part", &co); !st.Ok() {
		t.Fatalf("resent create: %v", st)
	}
	if st := second.Create(nil, &fuse.CreateIn{InHeader: hdr(20), Flags: uint32(os.O_CREATE | os.O_EXCL | os.O_RDWR), Mode: 0o644}, "disk.part", &co); st != fuse.Status(syscall.EEXIST) {
		t.Fatalf("new create of an existing name: %v, want EEXIST", st)
	}
	if st := second.Rename(nil, &fuse.RenameIn{InHeader: hdr(12), Newdir: fuse.FUSE_ROOT_ID}, "disk.part", "disk"); !st.Ok() {
		t.Fatalf("rename (applied now): %v", st)
	}
	if st := second.Rename(nil, &fuse.RenameIn{InHeader: hdr(12), Newdir: fuse.FUSE_ROOT_ID}, "disk.part", "disk"); !st.Ok() {
		t.Fatalf("resent rename after it was applied: %v", st)
	}
	if st := second.Rename(nil, &fuse.RenameIn{InHeader: hdr(22), Newdir: fuse.FUSE_ROOT_ID}, "disk.part", "disk"); st != fuse.ENOENT {
		t.Fatalf("new rename of a missing name: %v, want ENOENT", st)
	}
	if st := second.Unlink(nil, &fuse.InHeader{Unique: 14, NodeId: fuse.FUSE_ROOT_ID}, "disk"); !st.Ok() {
		t.Fatalf("unlink (applied now): %v", st)
	}
	if st := second.Unlink(nil, &fuse.InHeader{Unique: 14, NodeId: fuse.FUSE_ROOT_ID}, "disk"); !st.Ok() {
		t.Fatalf("resent unlink after it was applied: %v", st)
	}
	if st := second.Unlink(nil, &fuse.InHeader{Unique: 24, NodeId: fuse.FUSE_ROOT_ID}, "disk"); st != fuse.ENOENT {
		t.Fatalf("new unlink of a missing name: %v, want ENOENT", st)
	}
	// A new connection starts ids again: its journal is reset.
	if err := ResetJournal(dir); err != nil {
		t.Fatal(err)
	}
	third := newFS()
	if st := third.Unlink(nil, &fuse.InHeader{Unique: 14, NodeId: fuse.FUSE_ROOT_ID}, "disk"); st != fuse.ENOENT {
		t.Fatalf("unlink on a new connection: %v, want ENOENT", st)
	}
}
