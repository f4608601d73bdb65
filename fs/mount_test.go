package fs

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/testenv"
)

func TestStaleMountCleaned(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedFUSE(t)
	// A daemon that dies leaves its mount point answering ENOTCONN; the next mount cleans it.
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	// Make a real stale mount: mount from a child process, then kill it with SIGKILL once it
	// says it is serving (not earlier: a process killed while it holds a file open on its own
	// mount — go-fuse's mount-time poll probe does — can never finish exiting).
	child := exec.Command(os.Args[0], "-test.run=^TestHelperMountAndHang$")
	ready := filepath.Join(dir, "ready")
	child.Env = append(os.Environ(), "BASEFS_HELPER_MNT="+mnt, "BASEFS_HELPER_STATE="+filepath.Join(dir, "state"), "BASEFS_HELPER_READY="+ready)
	child.Stdout, child.Stderr = os.Stderr, os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { child.Wait(); close(waited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			child.Process.Kill()
			t.Fatal("helper did not mount")
		}
		time.Sleep(20 * time.Millisecond)
	}
	child.Process.Kill()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		abortConnection(mnt)
		t.Fatal("the killed helper did not exit (a FUSE request to its own mount?); connection aborted")
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("after kill -9 the mount point answers %v; want ENOTCONN", err)
	}
	state, _ := local.Open(filepath.Join(dir, "state2"), local.Options{})
	c, _ := cache.New(cache.Config{Local: state})
	srv, err := Mount(mnt, Config{Images: c}, false)
	if err != nil {
		t.Fatalf("mount over a stale mount: %v", err)
	}
	defer srv.Unmount()
	if _, err := os.ReadDir(mnt); err != nil {
		t.Fatalf("new mount: %v", err)
	}
}

// TestHelperMountAndHang is run as a child process by TestStaleMountCleaned.
func TestHelperMountAndHang(t *testing.T) {
	mnt := os.Getenv("BASEFS_HELPER_MNT")
	if mnt == "" {
		return // not a child: nothing to do
	}
	state, _ := local.Open(os.Getenv("BASEFS_HELPER_STATE"), local.Options{})
	c, _ := cache.New(cache.Config{Local: state})
	if _, err := Mount(mnt, Config{Images: c}, false); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(os.Getenv("BASEFS_HELPER_READY"), nil, 0o644)
	time.Sleep(time.Minute)
}
