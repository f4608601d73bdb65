package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/daemon/control"
	"github.com/basefs/basefs/fs/names"
)

func init() {
	register("restart", command{
		summary: "restart (or upgrade) the daemon serving MOUNTPOINT without disturbing its readers",
		usage:   "restart MOUNTPOINT",
		run:     runRestart,
	})
}

// runRestart asks the mount's daemon, on its control socket, to start the basefs binary
// installed now, hand it the FUSE connection and retire the old serving process; the
// supervisor answers when it has, or why it could not (the old one then keeps serving).
func runRestart(ctx context.Context, args []string) error {
	f := newFlags("restart")
	timeout := f.Duration("timeout", 3*time.Minute, "how long to wait for the handover (a new process may take a minute to start and the old one 30 s to drain)")
	if _, err := parseFlags(f, args); err != nil {
		return err
	}
	if f.NArg() != 1 {
		return usageError{Msg: "want exactly one MOUNTPOINT"}
	}
	mnt, err := filepath.Abs(f.Arg(0))
	if err != nil {
		return err
	}
	sock, err := control.SocketFromMount(mnt)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := control.NewClient(sock)
	before, err := c.Status(ctx)
	if err != nil {
		return err
	}
	r, err := c.Restart(ctx)
	if errors.Is(err, control.ErrUnsupported) {
		return restartBySignal(ctx, mnt, c, before) // the daemon predates the restart request
	}
	if err != nil {
		return fmt.Errorf("%s: %w", mnt, err)
	}
	fmt.Printf("restarted %s: serving process %d (%s) → %d (%s) in %.2fs\n", mnt, r.OldPID, before.Version, r.PID, r.Version, r.Seconds)
	return nil
}

// restartBySignal restarts the daemon of an older basefs, whose supervisor restarts on SIGHUP
// and answers no restart request: signal it and watch the serving process change.
func restartBySignal(ctx context.Context, mnt string, c *control.Client, before *control.Status) error {
	_, pid, err := mountSupervisor(mnt)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("signal the supervisor %d: %w", pid, err)
	}
	for ctx.Err() == nil {
		st, err := c.Status(ctx)
		if err == nil && st.PID != before.PID {
			// The old one may still be draining; wait until it is gone.
			for syscall.Kill(before.PID, 0) == nil && ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
			}
			fmt.Printf("restarted %s: serving process %d (%s) → %d (%s) in %.2fs\n", mnt, before.PID, before.Version, st.PID, st.Version, time.Since(start).Seconds())
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s: the serving process did not change in time (see the supervisor's log: a new binary that fails to start leaves the old one serving)", mnt)
}

// supervisorOf asks the mount at mnt for its supervisor's pid.
func supervisorOf(mnt string) (int, error) {
	buf := make([]byte, 32)
	n, err := unix.Getxattr(mnt, names.SupervisorXattr, buf)
	if err != nil {
		return 0, fmt.Errorf("%s: no basefs supervisor answers (%v): is it a basefs mount?", mnt, err)
	}
	pid, err := strconv.Atoi(string(buf[:n]))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("%s: bad supervisor pid %q", mnt, buf[:n])
	}
	return pid, nil
}

func init() {
	register("stop", command{
		summary: "unmount MOUNTPOINT and stop its daemon, once nothing uses it",
		usage:   "stop [--timeout D] MOUNTPOINT",
		run:     runStop,
	})
}

// runStop asks the mount's supervisor to unmount (SIGTERM) and waits until it has exited. A
// mount still in use (running guests) stays mounted and served: the error says so.
func runStop(ctx context.Context, args []string) error {
	f := newFlags("stop")
	timeout := f.Duration("timeout", 20*time.Second, "how long to wait for the unmount")
	if _, err := parseFlags(f, args); err != nil {
		return err
	}
	if f.NArg() != 1 {
		return usageError{Msg: "want exactly one MOUNTPOINT"}
	}
	mnt, pid, err := mountSupervisor(f.Arg(0))
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal the supervisor %d: %w", pid, err)
	}
	for deadline := time.Now().Add(*timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			fmt.Printf("stopped %s (supervisor %d)\n", mnt, pid)
			return nil
		}
	}
	return fmt.Errorf("%s: still mounted after %s: something uses it (running guests?); it is still served — stop its users, then stop again", mnt, *timeout)
}

// mountSupervisor returns mount point arg made absolute and the pid of its supervisor, once
// checked to be the basefs supervisor of that mount (checkSupervisor): restart and stop signal
// no other process.
func mountSupervisor(arg string) (string, int, error) {
	mnt, err := filepath.Abs(arg)
	if err != nil {
		return "", 0, err
	}
	pid, err := supervisorOf(mnt)
	if err != nil {
		return "", 0, err
	}
	if err := checkSupervisor(mnt, pid); err != nil {
		return "", 0, err
	}
	return mnt, pid, nil
}
