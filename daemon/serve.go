package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/basefs/basefs/daemon/control"
	"github.com/basefs/basefs/fs"
	"github.com/basefs/basefs/fs/handover"
)

// drainMax bounds how long a serving process handing over waits for the requests it holds:
// whatever it holds after that is resent by the kernel to the next one.
const drainMax = 2 * time.Second

// mountOptions are go-fuse's options for a connection that exists (/dev/fd/N).
func (d *Daemon) mountOptions() *fuse.MountOptions {
	opts := fs.MountOptions(d.cfg.Debug)
	opts.DirectMount = false
	return opts
}

// ServeDirect serves the connection itself (package fs/handover) until the connection ends,
// SIGTERM (ctx), or the supervisor says drain: then it finishes what it holds (at most
// drainMax) and exits at once; the kernel resends the rest to the next serving process.
func (d *Daemon) ServeDirect(ctx context.Context, l net.Listener, h *handover.Server) error {
	stop, err := d.start(ctx, l)
	if err != nil {
		d.closeParts()
		return err
	}
	defer stop()
	log := d.log
	if err := handover.LockMemory(); err != nil {
		log.Warn("memory not locked: if this process is killed, a request it is reading or answering at that instant may fail with EIO instead of being resent", "err", err)
	}
	srv, err := h.Attach(func(mp string) (*fuse.Server, error) { return fuse.NewServer(d.fs, mp, d.mountOptions()) })
	if err != nil {
		return err
	}
	if err := d.manager.RefreshCounters(ctx); err != nil {
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
	log.Info("serving the FUSE connection directly", "mountpoint", d.cfg.Mountpoint, "state", d.cfg.Store.Root(), "origins", d.cfg.OriginURLs, "supervisor", h.SupervisorPID())
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
	d.cache.Flush() // chunks fetched so far durable: the next process need not fetch them again
	select {
	case <-d.fs.Idle():
	case <-time.After(drainMax):
		log.Warn("still answering requests after the drain time; the kernel resends them to the next process")
	}
	if err := d.manager.SaveCounters(); err != nil {
		log.Warn("cannot save the manager's counters for the next process", "err", err)
	}
	log.Info("handed over: exiting", "drain", time.Since(start))
	os.Exit(0)
	return nil
}

// ServeRelayed serves the socket fd the supervisor relays the connection on (package
// fs/relay: a kernel without FUSE_NOTIFY_RESEND) until SIGTERM (ctx).
func (d *Daemon) ServeRelayed(ctx context.Context, l net.Listener, fd int) error {
	stop, err := d.start(ctx, l)
	if err != nil {
		d.closeParts()
		return err
	}
	defer stop()
	srv, err := fuse.NewServer(d.fs, fmt.Sprintf("/dev/fd/%d", fd), d.mountOptions())
	if err != nil {
		return fmt.Errorf("serve the FUSE connection: %w", err)
	}
	d.manager.RefreshCounters(ctx) // relayed: the previous process may still count while this one serves
	go srv.Serve()
	d.log.Info("serving", "mountpoint", d.cfg.Mountpoint, "state", d.cfg.Store.Root(), "origins", d.cfg.OriginURLs, "control", control.SocketFromState(d.cfg.Store.Root()))
	<-ctx.Done()
	d.manager.SaveCounters()
	d.log.Info("stopping: the supervisor hands the connection on")
	return nil
}
