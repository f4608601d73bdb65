package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/cache/control"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/fs"
)

type mountOptions struct {
	state       string
	origins     []string
	metricsAddr string
	memoryCache int64
	debug       bool
}

func (o *mountOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.state, "state", defaultState, "the host's state directory")
	f.StringArrayVar(&o.origins, "origin", nil, "an origin to fetch missing chunks and manifests from, asked in order: dir:///PATH or http(s)://HOST/PATH (repeatable)")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464)")
	f.Int64Var(&o.memoryCache, "memory-cache", 256<<20, "bytes of recently verified chunks kept in memory")
	f.BoolVar(&o.debug, "debug", false, "log every FUSE request")
}

func init() {
	register("mount", command{
		summary: "serve the _base file system at MOUNTPOINT until SIGINT/SIGTERM",
		usage:   "mount --state DIR [--origin URL]... [--metrics-addr ADDR] MOUNTPOINT",
		run:     runMount,
	})
}

func runMount(ctx context.Context, args []string) error {
	var o mountOptions
	f := newFlags("mount")
	o.AddFlags(f)
	if err := parse(f, args); err != nil {
		return err
	}
	if f.NArg() != 1 {
		return usageError{"want exactly one MOUNTPOINT"}
	}
	mnt, err := filepath.Abs(f.Arg(0))
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var origins []chunkstore.Getter
	for _, u := range o.origins {
		g, err := cache.OpenOrigin(u)
		if err != nil {
			return usageError{"--origin: " + err.Error()}
		}
		origins = append(origins, g)
	}
	st, err := local.Open(o.state, local.Options{})
	if err != nil {
		return err
	}
	sock := control.SocketFromState(st.Root())
	ctl := &control.Server{Mountpoint: mnt, Origins: o.origins, Log: log}
	stopCtl, err := ctl.Listen(ctx, sock) // fails if another daemon serves this state
	if err != nil {
		return err
	}
	defer stopCtl()
	// This daemon is the state's only writer now: leftovers of a crash can go.
	if err := st.CleanTemp(); err != nil {
		return err
	}
	c, err := cache.New(cache.Config{Local: st, Origins: origins, MemoryBytes: o.memoryCache, Logger: log})
	if err != nil {
		return err
	}
	defer c.Close() // after unmount: every fetched chunk durable before exit
	ctl.SetCache(c)
	if o.metricsAddr != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(c.Collector())
		l, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr %s: %w", o.metricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go msrv.Serve(l)
		defer msrv.Close()
	}
	srv, err := fs.Mount(mnt, fs.Config{Images: c, ControlSocket: sock, Logger: log}, o.debug)
	if err != nil {
		return err
	}
	log.Info("serving", "mountpoint", mnt, "state", st.Root(), "origins", o.origins, "control", sock)
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-ctx.Done():
		log.Info("unmounting", "mountpoint", mnt)
		if err := unmount(srv, mnt); err != nil {
			return err
		}
		<-done
	case <-done:
		return errors.New("the file system was unmounted from outside")
	}
	return nil
}

// unmount unmounts, retrying while the mount is busy (a process may be finishing a read).
func unmount(srv interface{ Unmount() error }, mnt string) error {
	var err error
	for range 50 {
		if err = srv.Unmount(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("unmount %s: %w (still in use? the daemon keeps serving until it is free)", mnt, err)
}
