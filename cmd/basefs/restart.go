package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/cache/control"
	"github.com/basefs/basefs/fs"
)

func init() {
	register("restart", command{
		summary: "restart (or upgrade) the daemon serving MOUNTPOINT without disturbing its readers",
		usage:   "restart MOUNTPOINT",
		run:     runRestart,
	})
}

// runRestart asks the mount's supervisor (SIGHUP) to start the basefs binary installed now,
// hand it the FUSE connection and retire the old serving process, and waits until it has.
func runRestart(ctx context.Context, args []string) error {
	f := newFlags("restart")
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
	buf := make([]byte, 32)
	n, err := unix.Getxattr(mnt, fs.SupervisorXattr, buf)
	if err != nil {
		return fmt.Errorf("%s: no basefs supervisor answers (%v): is it a basefs mount?", mnt, err)
	}
	pid, err := strconv.Atoi(string(buf[:n]))
	if err != nil || pid <= 1 {
		return fmt.Errorf("%s: bad supervisor pid %q", mnt, buf[:n])
	}
	if err := checkSupervisor(mnt, pid); err != nil {
		return err
	}
	sock, err := control.SocketFromMount(mnt)
	if err != nil {
		return err
	}
	c := control.NewClient(sock)
	before, err := c.Status(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("signal the supervisor %d: %w", pid, err)
	}
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		st, err := c.Status(ctx)
		if err == nil && st.PID != before.PID {
			// The old one may still be draining; wait until it is gone.
			for syscall.Kill(before.PID, 0) == nil && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			fmt.Printf("restarted %s: serving process %d (%s) → %d (%s) in %.2fs\n", mnt, before.PID, before.Version, st.PID, st.Version, time.Since(start).Seconds())
			return nil
		}
	}
	return fmt.Errorf("%s: the serving process did not change within 90 s (see the supervisor's log: a new binary that fails to start leaves the old one serving)", mnt)
}
