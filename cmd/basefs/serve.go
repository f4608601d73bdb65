package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore/local"
	basefsd "github.com/basefs/basefs/daemon" // the package; daemon is the tests' child process
	"github.com/basefs/basefs/fs/handover"
)

// hidden worker flags: what the supervisor hands the serving process.
type serveOptions struct {
	mountOptions
	fuseFD, controlFD, linkFD int
}

func init() {
	register("serve", command{
		summary: "(internal) the serving process the mount supervisor starts",
		usage:   "serve --fuse-fd N --control-fd N [--link-fd N] [mount flags] MOUNTPOINT",
		run:     runServe,
		hidden:  true,
	})
}

func runServe(ctx context.Context, args []string) error {
	var o serveOptions
	f := newFlags("serve")
	o.AddFlags(f)
	f.IntVar(&o.fuseFD, "fuse-fd", -1, "the FUSE connection (/dev/fuse with --link-fd, else a socket the supervisor relays)")
	f.IntVar(&o.controlFD, "control-fd", -1, "the control socket's listener")
	f.IntVar(&o.linkFD, "link-fd", -1, "the link to the supervisor (package fs/handover)")
	if _, err := parseFlags(f, args); err != nil {
		return err
	}
	if f.NArg() != 1 || o.fuseFD < 0 || o.controlFD < 0 {
		return usageError{Msg: "serve is started by basefs mount"}
	}
	mnt, err := filepath.Abs(f.Arg(0))
	if err != nil {
		return err
	}
	// Kept open for the process's life (an unreferenced os.File closes its descriptor): a
	// serving process hands it, and the connection, to the supervisor it starts if its own dies.
	lf := os.NewFile(uintptr(o.controlFD), "control")
	l, err := net.FileListener(lf)
	if err != nil {
		return fmt.Errorf("control listener: %w", err)
	}
	var h *handover.Server
	if o.linkFD >= 0 {
		for _, fd := range []int{o.fuseFD, o.controlFD, o.linkFD} {
			syscall.CloseOnExec(fd) // qemu-img and other children must not hold them
		}
		self, err := executable()
		if err != nil {
			return err
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("pid", os.Getpid())
		h, err = handover.Join(o.linkFD, o.fuseFD, log, respawnSupervisor(self, mountArgs(args), os.NewFile(uintptr(o.fuseFD), "/dev/fuse"), lf))
		if err != nil {
			return err
		}
	}
	return serve(ctx, o.mountOptions, mnt, l, o.fuseFD, h)
}

// serve is the serving process (package daemon): the daemon built whole from the mount's
// options, then the control API on l and the file system on the FUSE connection fuseFD
// (with h, the connection itself; else a socket the supervisor relays), until SIGTERM, the
// end of the connection, or a handover.
func serve(ctx context.Context, o mountOptions, mnt string, l net.Listener, fuseFD int, h *handover.Server) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("pid", os.Getpid())
	cfg, err := o.daemonConfig(ctx, mnt, log)
	if err != nil {
		return err
	}
	cfg.Supervisor = os.Getppid
	if h != nil {
		cfg.Supervisor = h.SupervisorPID // it changes when the supervisor is replaced
	}
	d, err := basefsd.New(cfg)
	if err != nil {
		return err
	}
	if h != nil {
		return d.ServeDirect(ctx, l, h)
	}
	return d.ServeRelayed(ctx, l, fuseFD)
}

// daemonConfig opens what the options name (the state, the origins, Glance) for a daemon.
func (o *mountOptions) daemonConfig(ctx context.Context, mnt string, log *slog.Logger) (basefsd.Config, error) {
	origins, err := o.s3.openOrigins(ctx, o.origins, log) // dir://, http(s)://, s3://
	if err != nil {
		return basefsd.Config{}, err
	}
	lim, err := o.limits.limits()
	if err != nil {
		return basefsd.Config{}, err
	}
	st, err := local.Open(o.state, local.Options{MinFree: lim.MinFree})
	if err != nil {
		return basefsd.Config{}, err
	}
	peers, err := o.peers.config()
	if err != nil {
		return basefsd.Config{}, err
	}
	access, _ := o.access() // validated by basefs mount
	cfg := basefsd.Config{Version: version, Mountpoint: mnt, Store: st, Origins: origins, OriginURLs: o.origins,
		MemoryCache: o.memoryCache, WriteBack: o.writeBack, Limits: lim, InstancesPaths: o.instancesPaths,
		Peers: peers, MetricsAddr: o.metricsAddr, Access: access, Debug: o.debug,
		Restarts: basefsd.RestartsFromState(st.Root()), Log: log,
		Manager: cache.ManagerConfig{
			MinAge:        time.Duration(o.minAge) * time.Second,
			KeepUnused:    !o.removeUnused,
			CacheSize:     o.cacheSize,
			ScrubRate:     o.scrubRate,
			FillRate:      o.fillRate,
			PrefetchRate:  o.prefetchRate,
			PrecacheDelay: o.precacheDelay,
			ProfileWindow: o.profileWindow,
			Interval:      o.interval,
		}}
	if o.glance.configured() {
		g := &basefsd.GlanceConfig{ListMinInterval: o.glance.listMinInterval, ListInterval: o.glance.listInterval}
		if g.Client, g.Err = o.glance.open(ctx); g.Err != nil {
			// Keep serving what is local (and the other origins): say why Glance is missing.
			log.Error("Glance unusable: its images are not served until this is fixed and the daemon restarted (basefs restart)", "err", g.Err)
		}
		cfg.Glance = g
	}
	return cfg, nil
}
