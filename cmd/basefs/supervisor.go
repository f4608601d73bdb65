package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/cache/control"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/fs"
	"github.com/basefs/basefs/fs/relay"
)

// supervise is `basefs mount`: it owns the mount and the FUSE connection, and runs the
// serving process (`basefs serve`) on it through the relay, restarting it gracefully on
// SIGHUP (the binary on disk then: an upgrade) and at once if it dies. It unmounts on
// SIGINT/SIGTERM.
func supervise(ctx context.Context, o mountOptions, mnt string, args []string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("supervisor", os.Getpid())
	self, err := executable()
	if err != nil {
		return err
	}
	st, err := local.Open(o.state, local.Options{})
	if err != nil {
		return err
	}
	if err := fs.CleanStaleMount(mnt); err != nil {
		return err
	}
	if fi, err := os.Stat(mnt); err != nil {
		return fmt.Errorf("mount point %s: %w", mnt, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("mount point %s: not a directory", mnt)
	}
	sock := control.SocketFromState(st.Root())
	if c, err := net.Dial("unix", sock); err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another daemon is serving this state directory", sock)
	}
	os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", sock, err)
	}
	defer os.Remove(sock)
	os.Chmod(sock, 0o600)
	lf, err := l.(*net.UnixListener).File()
	if err != nil {
		return err
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	// The supervisor is the state's only owner now: leftovers of a crash can go.
	if err := st.CleanTemp(); err != nil {
		return err
	}
	// A new FUSE connection: no request of an old one can be resent, no file of it is open.
	if err := fs.ResetJournal(fs.FilesDir(st.Root())); err != nil {
		return err
	}
	if err := fs.CleanOrphans(fs.FilesDir(st.Root())); err != nil {
		return err
	}
	dev, err := mountFUSE(mnt)
	if err != nil {
		return err
	}
	r := relay.New(dev, log, func(sockEnd *os.File) (*exec.Cmd, error) {
		cmd := exec.Command(self, append([]string{"serve", "--fuse-fd", "3", "--control-fd", "4"}, args...)...)
		cmd.ExtraFiles = []*os.File{sockEnd, lf}
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		return cmd, cmd.Start()
	})
	served := make(chan error, 1)
	go func() { served <- r.Run() }()
	log.Info("mounted", "mountpoint", mnt, "state", st.Root())

	var stopSignals context.CancelFunc = func() {}
	defer func() { stopSignals() }()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			log.Info("SIGHUP: restarting the serving process", "binary", self)
			if err := r.Restart(); err != nil {
				log.Error("restart failed", "err", err)
			}
		case err := <-served:
			r.Stop()
			if err == nil {
				err = fmt.Errorf("%s was unmounted from outside", mnt)
			}
			return err
		case <-ctx.Done():
			log.Info("unmounting", "mountpoint", mnt)
			var uerr error
			for range 50 {
				if uerr = unix.Unmount(mnt, 0); uerr == nil || errors.Is(uerr, unix.EINVAL) {
					uerr = nil
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if uerr != nil {
				// Exiting now would cut the connection under whoever uses the mount (guests):
				// keep serving, and say so.
				log.Error("cannot unmount: still in use; keeping on serving (stop what uses it, then signal again)", "mountpoint", mnt, "err", uerr)
				ctx, stopSignals = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
				continue
			}
			r.Stop()
			return nil
		}
	}
}

// executable is the basefs binary to run serving processes from: the path this one was
// started as, so an upgraded binary installed there is what a restart runs.
func executable() (string, error) {
	p, err := exec.LookPath(os.Args[0])
	if err != nil {
		return os.Executable()
	}
	return filepath.Abs(p)
}

// mountFUSE opens /dev/fuse and mounts it at mnt: allow_other, default permissions, 1 MiB
// reads; read-write (images refuse writes themselves; every other name is a local file).
// The returned file is the connection.
func mountFUSE(mnt string) (*os.File, error) {
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/fuse: %w", err)
	}
	data := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions,max_read=%d", fd, 1<<20)
	if err := unix.Mount("basefs", mnt, "fuse.basefs", unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mount %s: %w (needs root and /dev/fuse)", mnt, err)
	}
	return os.NewFile(uintptr(fd), "/dev/fuse"), nil
}
