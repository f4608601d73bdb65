package main

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/fs"
	"github.com/basefs/basefs/fs/handover"
)

// adoptFlag marks a supervisor started by the serving process whose supervisor died.
const adoptFlag = "adopt"

// drainMax bounds how long a serving process handing over waits for the requests it holds:
// whatever it holds after that is resent by the kernel to the next one.
const drainMax = 2 * time.Second

// startServing returns how a supervisor starts a serving process on the connection dev with
// the control listener lf: `basefs serve` with the mount's flags, the connection as fd 3, the
// listener as fd 4 and its end of the link as fd 5. It is in a process group of its own, so
// a terminal's ^C reaches only the supervisor (which unmounts, then stops it).
func startServing(self string, args []string, dev, lf *os.File) func(link *os.File) (*exec.Cmd, error) {
	args = slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == "--"+adoptFlag })
	return func(link *os.File) (*exec.Cmd, error) {
		cmd := exec.Command(self, append([]string{"serve", "--fuse-fd", "3", "--control-fd", "4", "--link-fd", "5"}, args...)...)
		cmd.ExtraFiles = []*os.File{dev, lf, link}
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return cmd, cmd.Start()
	}
}

// respawnSupervisor returns how a serving process starts a supervisor that adopts it: `basefs
// mount --adopt` with the mount's flags, the connection as fd 3, the listener as fd 4, its
// end of the link as fd 5; in a session of its own (it outlives this process).
func respawnSupervisor(self string, mountArgs []string, dev, lf *os.File) func(link *os.File) (*exec.Cmd, error) {
	return func(link *os.File) (*exec.Cmd, error) {
		cmd := exec.Command(self, append([]string{"mount", "--" + adoptFlag}, mountArgs...)...)
		cmd.ExtraFiles = []*os.File{dev, lf, link}
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		return cmd, cmd.Start()
	}
}

// mountArgs returns serve's arguments without what only serve takes: the mount's own.
func mountArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--fuse-fd", "--control-fd", "--link-fd":
			i++
		default:
			out = append(out, args[i])
		}
	}
	return out
}

// serveDirect serves the connection itself (package fs/handover) until the connection ends,
// SIGTERM, or the supervisor says drain: then it finishes what it holds (at most drainMax)
// and exits at once; the kernel resends the rest to the next serving process.
func serveDirect(ctx context.Context, log *slog.Logger, h *handover.Server, fsys *fs.FS, opts *fuse.MountOptions, c *cache.Cache, mgr *cache.Manager) error {
	if err := handover.LockMemory(); err != nil {
		log.Warn("memory not locked: if this process is killed, a request it is reading or answering at that instant may fail with EIO instead of being resent", "err", err)
	}
	srv, err := h.Attach(func(mp string) (*fuse.Server, error) { return fuse.NewServer(fsys, mp, opts) })
	if err != nil {
		return err
	}
	if err := mgr.RefreshCounters(ctx); err != nil {
		log.Warn("the manager's counters start over", "err", err)
	}
	served := make(chan struct{})
	go func() {
		srv.Serve()
		close(served)
	}()
	drain := make(chan struct{})
	go func() {
		h.Run()
		close(drain)
	}()
	log.Info("serving the FUSE connection directly", "supervisor", h.SupervisorPID())
	select {
	case <-ctx.Done():
		log.Info("stopping")
		return nil
	case <-served:
		log.Info("the FUSE connection ended")
		return nil
	case <-drain:
	}
	start := time.Now()
	c.Flush() // chunks fetched so far durable: the next process need not fetch them again
	select {
	case <-fsys.Idle():
	case <-time.After(drainMax):
		log.Warn("still answering requests after the drain time; the kernel resends them to the next process")
	}
	if err := mgr.SaveCounters(); err != nil {
		log.Warn("cannot save the manager's counters for the next process", "err", err)
	}
	log.Info("handed over: exiting", "drain", time.Since(start))
	os.Exit(0)
	return nil
}
