package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/agent/nova"
	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/cache/glanceimg"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance"
	"github.com/basefs/basefs/chunkstore/importer"
	"github.com/basefs/basefs/chunkstore/inspect"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/peer"
	"github.com/basefs/basefs/daemon/control"
	"github.com/basefs/basefs/fs"
)

// Config is what a serving process is made of: the mount's settings, read and checked by
// cmd/basefs, and the parts it opened (the state, the origins, the Glance client).
type Config struct {
	Version     string // of the serving binary
	Mountpoint  string
	Store       *local.Store
	Origins     []chunkstore.Getter // asked in order after the peers
	OriginURLs  []string            // as configured (status)
	MemoryCache int64               // bytes of verified chunks kept in memory
	WriteBack   bool                // write what origins send behind the first s3:// one to it
	Limits      importer.Limits
	// Manager is the cache manager's policy (ages, rates, interval); the daemon adds the
	// in-use scan, the counters, the limits and the refusals.
	Manager        cache.ManagerConfig
	InstancesPaths []string      // scanned for overlays whose bases are in use
	Glance         *GlanceConfig // nil: not configured
	Peers          *peer.Config  // nil: the peer tier is off
	MetricsAddr    string        // empty: no Prometheus listener
	Access         fs.Access
	Debug          bool // log every FUSE request
	// Supervisor returns the pid of the supervisor holding the FUSE connection (the mount
	// root publishes it).
	Supervisor func() int
	// Restarts is the supervisor's restart desk (empty: restart over the socket is refused).
	Restarts string
	Log      *slog.Logger
}

// GlanceConfig is Glance as the daemon reaches it.
type GlanceConfig struct {
	Client *glance.Client // nil when Err says why Glance cannot be used
	// Err keeps Glance's images from being served (bad credentials, Keystone down); the
	// daemon serves what is local and the other origins, and says why in its status.
	Err                           error
	ListMinInterval, ListInterval time.Duration
}

// Daemon is one serving process: the cache and its manager, Glance's images, the peer tier,
// the file system, the control API and the metrics — built whole by New before any of it
// serves, then started by ServeDirect or ServeRelayed.
type Daemon struct {
	cfg      Config
	log      *slog.Logger
	cache    *cache.Cache
	manager  *cache.Manager
	glance   *glanceimg.Layer
	catalog  *glance.Catalog // nil without Glance
	peers    *peerOrigin     // nil when off
	fs       *fs.FS
	control  *Server
	registry *prometheus.Registry // nil without MetricsAddr
}

// New builds the daemon; nothing serves yet.
func New(cfg Config) (*Daemon, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root := cfg.Store.Root()
	d := &Daemon{cfg: cfg, log: log}
	refusals := &inspect.Refusals{}
	var gorigin *glance.Origin
	if g := cfg.Glance; g != nil && g.Err == nil {
		gorigin = glance.NewOrigin(g.Client)
		d.catalog = glance.NewCatalog(g.Client.ListIDs, g.ListMinInterval)
	}
	// nova's names: Glance images (through the catalog) and adopted downloads.
	names := glanceimg.NewNames(root)
	ccfg := cache.Config{Local: cfg.Store, Origins: cfg.Origins, Names: names, MemoryBytes: cfg.MemoryCache, Logger: log, WriteBack: cfg.WriteBack}
	if gorigin != nil {
		// Glance is the last origin: chunks of raw Glance images read by range, verified.
		ccfg.Origins = append(slices.Clip(ccfg.Origins), gorigin)
		ccfg.OnManifest = gorigin.Register
	}
	if cfg.Peers != nil {
		// The peers are asked first: a chunk's owner serves it from its copy or takes it once
		// from the origins behind them.
		d.peers = &peerOrigin{cfg: *cfg.Peers}
		ccfg.Origins = append([]chunkstore.Getter{d.peers}, ccfg.Origins...)
	}
	raiseOpenFiles(log) // before the cache sizes its open chunk files by the limit
	c, err := cache.New(ccfg)
	if err != nil {
		return nil, err
	}
	d.cache = c
	d.glance = glanceimg.New(glanceimg.Config{Cache: c, Names: names, Origin: gorigin, Catalog: d.catalog, Logger: log,
		Limits: cfg.Limits, Refusals: refusals})
	mcfg := cfg.Manager
	mcfg.InUse = inUseScanner(cfg.InstancesPaths, d.glance.CacheKey) // nova's names of lazily read images too
	mcfg.Counters = cache.CountersPath(root)
	mcfg.ImportLimits = cfg.Limits
	mcfg.Refusals = refusals
	if d.manager, err = cache.NewManager(c, mcfg); err != nil {
		d.closeParts()
		return nil, err
	}
	resolver := fs.Resolvers{fs.DigestResolver{}, glanceimg.Resolver{L: d.glance}}
	sock := control.SocketFromState(root)
	d.fs, err = fs.New(fs.Config{Images: c, ControlSocket: sock, Logger: log, Supervisor: cfg.Supervisor,
		ObserveRequest: func(op string, t time.Duration) { requestLatency.WithLabelValues(op).Observe(t.Seconds()) },
		NodeLog:        filepath.Join(root, "nodes"), Files: fs.FilesDir(root), Maintainer: d.manager, Access: cfg.Access,
		Resolver: resolver, Aliases: d.glance})
	if err != nil {
		d.closeParts()
		return nil, err
	}
	d.control = &Server{Version: cfg.Version, Mountpoint: cfg.Mountpoint, Origins: cfg.OriginURLs, Log: log,
		Cache: c, Manager: d.manager, Writable: d.fs.WritableUsage, Refusals: refusals, Owner: cfg.Access.Uid,
		Resolve: resolver.ResolveContext, EnsureGlance: d.glance.Ensure, Restarts: cfg.Restarts}
	if cfg.Glance != nil {
		d.control.Glance = d.glanceState
	}
	if d.peers != nil {
		d.control.Peers = d.peers.state
	}
	if cfg.MetricsAddr != "" {
		d.registry = prometheus.NewRegistry()
		d.registry.MustRegister(c.Collector(), d.glance.Collector(), requestLatency)
		d.registry.MustRegister(daemonMetrics(cfg.Version, root, cfg.Limits.MinFree, d.glanceUp)...)
	}
	return d, nil
}

// closeParts closes what New opened, in reverse.
func (d *Daemon) closeParts() {
	d.glance.Close()
	d.cache.Close() // every fetched chunk durable before exit
}

// glanceState is the status's view of Glance.
func (d *Daemon) glanceState() *control.GlanceState {
	g := &control.GlanceState{}
	if err := d.cfg.Glance.Err; err != nil {
		g.Error = err.Error()
	}
	if d.catalog != nil {
		cs := d.catalog.Stats()
		g.Catalog = &cs
	}
	ls := d.glance.Stats()
	g.Layer = &ls
	return g
}

// glanceUp tells whether Glance is configured and answered its last listing.
func (d *Daemon) glanceUp() (configured, up bool) {
	if d.cfg.Glance == nil {
		return false, false
	}
	return true, d.cfg.Glance.Err == nil && d.catalog != nil && d.catalog.Stats().LastError == ""
}

// start serves everything but the file system: the control API on l, the metrics, the
// manager's background work, Glance's listing and the peer tier. stop undoes it.
func (d *Daemon) start(ctx context.Context, l net.Listener) (stop func(), err error) {
	var ml net.Listener
	if d.registry != nil {
		// SO_REUSEPORT: during a graceful restart the old and new process both listen.
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
			return serr
		}}
		if ml, err = lc.Listen(ctx, "tcp", d.cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("--metrics-addr %s: %w", d.cfg.MetricsAddr, err)
		}
	}
	mctx, stopBackground := context.WithCancel(ctx)
	go d.manager.Run(mctx)
	if d.catalog != nil {
		go d.catalog.Run(mctx, d.cfg.Glance.ListInterval)
	}
	stopPeers := func() {}
	if d.peers != nil {
		stopPeers = d.peers.start(ctx, d.log, peer.Sources{Chunk: d.cache.Chunk, Manifest: d.manifestForPeer})
	}
	stopCtl := d.control.Serve(l)
	closeMetrics := func() {}
	if ml != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(d.registry, promhttp.HandlerOpts{}))
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go msrv.Serve(ml)
		closeMetrics = func() { msrv.Close() }
	}
	return func() {
		closeMetrics()
		stopBackground()
		d.closeParts()
		stopPeers()
		stopCtl()
	}, nil
}

// inUseScanner finds the images backing instance overlays under the instance paths, as
// nova's image cache manager does (nova.InUseImages). A path that does not exist holds none.
func inUseScanner(paths []string, alias func(string) (chunkstore.Digest, bool)) func(context.Context) (map[chunkstore.Digest][]string, error) {
	return func(ctx context.Context) (map[chunkstore.Digest][]string, error) {
		all := make(map[chunkstore.Digest][]string)
		for _, p := range paths {
			if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
				continue
			}
			u, err := nova.InUseImagesAliased(ctx, p, alias)
			if err != nil {
				return nil, err
			}
			for d, ids := range u {
				all[d] = append(all[d], ids...)
			}
		}
		return all, nil
	}
}

// openFilesWanted is the open-file limit a serving process lifts itself to when it may: the
// cache keeps up to half of it (at most 32768) chunk files open for sub-block reads.
const openFilesWanted = 65536

// raiseOpenFiles lifts RLIMIT_NOFILE to openFilesWanted when it is lower and the process may
// (root; the systemd unit's LimitNOFILE does it too). Go has already lifted the soft limit to
// the hard one.
func raiseOpenFiles(log *slog.Logger) {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil || rl.Cur >= openFilesWanted {
		return
	}
	want := syscall.Rlimit{Cur: openFilesWanted, Max: max(rl.Max, openFilesWanted)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		log.Info("open-file limit not raised: fewer chunk files are kept open for sub-block reads", "limit", rl.Cur, "err", err)
	}
}
