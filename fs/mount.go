package fs

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// MountOptions are the FUSE options basefs mounts with: readable by qemu (which runs as
// another user), permissions checked by the kernel, large reads. The mount is read-write for
// the writable area; images refuse writes themselves (EROFS).
func MountOptions(debug bool) *fuse.MountOptions {
	return &fuse.MountOptions{
		AllowOther:   true,
		FsName:       "basefs",
		Name:         "basefs",
		Options:      []string{"default_permissions"},
		MaxWrite:     1 << 20,
		MaxReadAhead: 1 << 20,
		DirectMount:  true,
		// Read replies come from memory; splicing them buys nothing and 1 MiB replies
		// exceed the pipe size.
		DisableSplice: true,
		// READDIRPLUS would hand the kernel node ids from readdir; lookups are enough.
		DisableReadDirPlus: true,
		Debug:              debug,
	}
}

// CleanStaleMount detaches a mount left at dir by a daemon that died: its mount point then
// answers ENOTCONN. A live mount or a plain directory is left alone.
func CleanStaleMount(dir string) error {
	// statfs always reaches the daemon (stat may be answered from the kernel's cache).
	var st unix.Statfs_t
	err := unix.Statfs(dir, &st)
	if err == nil || !errors.Is(err, syscall.ENOTCONN) {
		return nil
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("stale mount at %s (its daemon died): unmount: %w", dir, err)
	}
	return nil
}

// Mount mounts the tree at dir and returns the running server. Call Unmount and Wait on it.
func Mount(dir string, cfg Config, debug bool) (*fuse.Server, error) {
	if err := CleanStaleMount(dir); err != nil {
		return nil, err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("mount point %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("mount point %s: not a directory", dir)
	}
	fsys, err := New(cfg)
	if err != nil {
		return nil, err
	}
	srv, err := fuse.NewServer(fsys, dir, MountOptions(debug))
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		srv.Unmount()
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	return srv, nil
}
