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

	"github.com/basefs/basefs/chunkstore/local"
	basefsd "github.com/basefs/basefs/daemon" // the package; daemon is the tests' child process
	"github.com/basefs/basefs/daemon/control"
	"github.com/basefs/basefs/fs"
	"github.com/basefs/basefs/fs/handover"
	"github.com/basefs/basefs/fs/relay"
)

// supervise is `basefs mount`: it mounts, holds the FUSE connection and keeps a serving
// process (`basefs serve`) on it, which reads and answers the connection itself (package
// fs/handover; on a kernel without FUSE_NOTIFY_RESEND through the relay, fs/relay). It
// restarts it gracefully on SIGHUP (the binary on disk then: an upgrade) and at once if it
// dies, and unmounts on SIGINT/SIGTERM.
func supervise(ctx context.Context, o mountOptions, mnt string, args []string) error {
	if o.adopt {
		return superviseAdopted(ctx, o, mnt, args)
	}
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
	access, err := o.access()
	if err != nil {
		return err
	}
	l, err := basefsd.Listen(sock, access.Uid)
	if err != nil {
		return err
	}
	defer os.Remove(sock)
	lf, err := l.File()
	if err != nil {
		return err
	}
	l.SetUnlinkOnClose(false)
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
	dev, err := handover.Mount(mnt)
	if err != nil {
		return err
	}
	log.Info("mounted", "mountpoint", mnt, "state", st.Root())
	perr := handover.Probe(dev)
	if perr == nil && o.relay {
		perr = errors.New("--relay given")
	}
	if perr != nil {
		// No resend: a request the serving process read when it died could not be asked
		// of the next one; the relay keeps every unanswered request itself.
		log.Warn("kernel without FUSE_NOTIFY_RESEND: requests are relayed to the serving process", "err", perr)
		r := relay.New(dev, log, func(sockEnd *os.File) (*exec.Cmd, error) {
			cmd := exec.Command(self, append([]string{"serve", "--fuse-fd", "3", "--control-fd", "4"}, args...)...)
			cmd.ExtraFiles = []*os.File{sockEnd, lf}
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
			return cmd, cmd.Start()
		})
		notifyReady(log)
		return superviseLoop(ctx, log, mnt, st.Root(), r.Run, r.Restart, r.Stop)
	}
	init, err := handover.ReadInit(dev)
	if err != nil {
		unix.Unmount(mnt, unix.MNT_DETACH)
		return err
	}
	sv := handover.NewSupervisor(dev, init, log, startServing(self, args, dev, lf))
	notifyReady(log)
	return superviseLoop(ctx, log, mnt, st.Root(), func() error { return sv.Run(nil) }, sv.Restart, sv.Stop)
}

// superviseAdopted is `basefs mount --adopt`: the supervisor a serving process starts when
// its supervisor died, on the connection (fd 3), the control listener (fd 4) and a link to
// that serving process (fd 5) it hands over.
func superviseAdopted(ctx context.Context, o mountOptions, mnt string, args []string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("supervisor", os.Getpid())
	self, err := executable()
	if err != nil {
		return err
	}
	for fd := 3; fd <= 5; fd++ {
		syscall.CloseOnExec(fd) // nothing this process starts keeps them but serving processes
	}
	dev, lf, link := os.NewFile(3, "/dev/fuse"), os.NewFile(4, "control"), os.NewFile(5, "link")
	defer os.Remove(control.SocketFromState(o.state))
	sv := handover.NewSupervisor(dev, nil, log, startServing(self, args, dev, lf))
	notifyMainPID(log)
	return superviseLoop(ctx, log, mnt, o.state, func() error { return sv.Run(link) }, sv.Restart, sv.Stop)
}

// superviseLoop runs the connection's supervision (run) until the file system is unmounted:
// a restart asked on the control socket (basefs restart, through the restart desk, which
// answers it) or SIGHUP restarts the serving process (the binary on disk then: an upgrade),
// one at a time, each failure counted in the state directory; SIGINT/SIGTERM unmount.
func superviseLoop(ctx context.Context, log *slog.Logger, mnt, state string, run, restart func() error, stop func()) error {
	restart = basefsd.CountFailures(state, restart)
	desk, err := basefsd.OpenDesk(basefsd.RestartsFromState(state), restart, control.SocketFromState(state), log)
	if err != nil {
		log.Error("basefs restart cannot reach this supervisor (SIGHUP still restarts)", "err", err)
	} else {
		defer desk.Close()
		restart = desk.Restart
	}
	served := make(chan error, 1)
	go func() { served <- run() }()
	var stopSignals context.CancelFunc = func() {}
	defer func() { stopSignals() }()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			log.Info("SIGHUP: restarting the serving process")
			if err := restart(); err != nil {
				log.Error("restart failed", "err", err)
			}
		case err := <-served:
			stop()
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
				time.Sleep(100 * time.Millisecond) // EBUSY: give its users a moment
			}
			if uerr != nil {
				// Exiting now would cut the connection under whoever uses the mount (guests):
				// keep serving, and say so.
				log.Error("cannot unmount: still in use; keeping on serving (stop what uses it, then signal again)", "mountpoint", mnt, "err", uerr)
				ctx, stopSignals = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
				continue
			}
			stop()
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
