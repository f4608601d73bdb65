package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/chunkstore/testenv"
)

// TestMain lets the test binary be the loopback server, as basefs-bench is.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == LoopbackCommand {
		os.Exit(ServeLoopback(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestLoopbackPageCache mounts the loopback baseline in its own process and reads through it
// with O_DIRECT: the bytes are the plain file's, every read reaches the server (no
// passthrough), the server holds the plain file open without O_DIRECT (page cache), and the
// mount has basefs's options. Stop leaves no mount.
func TestLoopbackPageCache(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedFUSE(t)
	dir, mnt := t.TempDir(), filepath.Join(t.TempDir(), "mnt")
	plain := filepath.Join(dir, "image.raw")
	if err := writeImage(plain, 4*MiB, 3, []extent{{0, 4 * MiB}}); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := startLoopback(ctx, self, dir, mnt)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			l.Stop()
		}
	}()

	opts, err := mountOptionsOf(mnt)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{"nosuid", "nodev", "default_permissions", "allow_other", "max_read=1048576"} {
		if !strings.Contains(opts, o) {
			t.Errorf("mount options %q lack %s (basefs has it)", opts, o)
		}
	}

	rchar0, err := processReadBytes(l.PID())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(mnt, "image.raw"), os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf, err := unix.Mmap(-1, 0, int(MiB), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE) // page-aligned
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	for off := int64(0); off < 4*MiB; off += MiB {
		if n, err := f.ReadAt(buf, off); err != nil || n != len(buf) || !bytes.Equal(buf, want[off:off+MiB]) {
			t.Fatalf("O_DIRECT read at %d: %d bytes, %v, or not the plain file's bytes", off, n, err)
		}
	}
	rchar1, err := processReadBytes(l.PID())
	if err != nil {
		t.Fatal(err)
	}
	if rchar1-rchar0 < 4*MiB {
		t.Errorf("the loopback server read %d bytes for 4 MiB read through it: reads did not reach it (passthrough?)", rchar1-rchar0)
	}
	flags, err := openFlags(l.PID(), plain)
	if err != nil {
		t.Fatal(err)
	}
	if flags&syscall.O_DIRECT != 0 {
		t.Errorf("the loopback server opened %s with O_DIRECT (flags %o): it reads the disk, not the page cache", plain, flags)
	}

	f.Close()
	l.Stop()
	stopped = true
	if _, err := mountOptionsOf(mnt); err == nil {
		t.Errorf("%s is still mounted after Stop", mnt)
	}
}

// openFlags returns the open flags of the descriptor process pid holds on path.
func openFlags(pid int, path string) (int, error) {
	fds := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fds)
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(fds, e.Name())); err != nil || target != path {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
		if err != nil {
			return 0, err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "flags:"); ok {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 8, 64)
				return int(n), err
			}
		}
	}
	return 0, fmt.Errorf("process %d holds no descriptor on %s", pid, path)
}
