package fs

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
)

// Images is what the file system needs from the cache: images by digest, and the list.
type Images interface {
	Image(ctx context.Context, d chunkstore.Digest) (*cache.Image, error)
	Images(ctx context.Context) ([]chunkstore.Digest, error)
}

// Config configures a file system.
type Config struct {
	Images   Images
	Resolver Resolver // nil: DigestResolver
	// Aliases, when set, adds the extra names it lists to readdir (nova's sha1 names).
	Aliases AliasLister
	// ControlSocket is published as the root's names.ControlXattr (empty: none).
	ControlSocket string
	// Supervisor returns the pid of the supervisor holding the FUSE connection, published as
	// the root's names.SupervisorXattr (nil or 0: none; the serving process is the only one).
	Supervisor func() int
	// NodeLog, when set, is a file recording every node id handed to the kernel, so a
	// process taking over the connection can answer for them (empty: in memory only).
	NodeLog string
	// Files is the directory of the writable area: every name that is not an image name is a
	// plain local file kept there (nova's ephemeral, swap and download files). Empty: none,
	// and such names answer EROFS.
	Files string
	// Maintainer, when set, takes nova's metadata operations on image names: utime (last
	// use), unlink (removal), and the rename of a download to an image name (adoption).
	// Without it they answer EROFS.
	Maintainer Maintainer
	// Access is who may use the mount besides root (access.go): the owner of the root
	// directory and the images, and the group that may read them. Writable files belong to
	// whoever created them, with the mode they chose.
	Access Access
	// ObserveRequest, when set, is told each request's operation and how long it took
	// (the daemon's latency histograms).
	ObserveRequest func(op string, d time.Duration)
	Logger         *slog.Logger
}

// FS is the basefs file system, served through go-fuse's raw protocol API so that its node
// ids are its own deterministic inode numbers (inodeNumber, files.nodeOf): any process serving
// the same state answers for the ids the kernel already holds — the prerequisite for
// restarting the daemon under a live mount. File handles carry nothing (fh 0): every request
// names its node, and the dispatcher (dispatch.go) hands it to the node's kind: the root
// (root.go), an image view (image.go, view.go), a writable file (file.go), or an id nobody
// knows (unknown.go).
type FS struct {
	fuse.RawFileSystem // everything not implemented here answers ENOSYS
	cfg                Config
	root               *rootDir
	images             *imageTree
	area               *area // nil: no writable area
	unknown            *unknownNode
	kernel             *kernel

	inflight atomic.Int64 // requests being answered (track)
	draining atomic.Bool  // someone waits for idleness (Idle)
	idleMu   sync.Mutex
	idle     []chan struct{}
}

// New returns a basefs file system.
func New(cfg Config) (*FS, error) {
	if cfg.Resolver == nil {
		cfg.Resolver = DigestResolver{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &FS{RawFileSystem: fuse.NewDefaultRawFileSystem(), cfg: cfg, kernel: &kernel{}}
	var j *journal // of the writable area's requests that are not idempotent
	if cfg.Files != "" {
		files, err := openFiles(cfg.Files)
		if err != nil {
			return nil, err
		}
		if j, err = openJournal(cfg.Files + ".journal"); err != nil {
			return nil, err
		}
		f.area = &area{files: files, journal: j, logger: cfg.Logger}
	}
	f.images = &imageTree{cfg: &f.cfg, journal: j, kernel: f.kernel}
	f.images.nodes = newNodeTable(f.images, cfg.NodeLog, cfg.Logger)
	f.unknown = &unknownNode{cfg: &f.cfg}
	f.root = &rootDir{unknownNode: unknownNode{cfg: &f.cfg}, images: f.images, area: f.area, kernel: f.kernel, started: time.Now()}
	return f, nil
}

// Init keeps the server, to tell the kernel about names that change under it.
func (f *FS) Init(s *fuse.Server) { f.kernel.srv = s }

// kernel tells the kernel about changes it cannot see, after the reply to the request that
// made them (the kernel holds locks until then). Before Init (an FS called directly, in
// tests) there is no one to tell.
type kernel struct{ srv *fuse.Server }

// forget tells the kernel nodes inos are gone (their attributes and pages).
func (k *kernel) forget(inos []uint64) {
	if k.srv == nil || len(inos) == 0 {
		return
	}
	srv := k.srv
	go func() {
		for _, ino := range inos {
			srv.InodeNotify(ino, 0, 0)
		}
	}()
}

// lookAgain tells the kernel to look the root's names up again.
func (k *kernel) lookAgain(names ...string) {
	if k.srv == nil {
		return
	}
	srv := k.srv
	go func() {
		for _, n := range names {
			srv.EntryNotify(fuse.FUSE_ROOT_ID, n)
		}
	}()
}

// How long the kernel may keep names and attributes: images are immutable, so positive
// answers can be kept long; a missing name may appear (imported, fetched) and is kept briefly.
const (
	positiveTimeout = time.Hour
	negativeTimeout = time.Second
	// attrTimeout: an image's attributes change with its use (mtime) and what is held
	// locally (blocks).
	attrTimeout = time.Second
)

func (f *FS) String() string { return "basefs" }

// ctxOf makes a request's context: done when the kernel interrupts the request.
func ctxOf(cancel <-chan struct{}) context.Context { return &fuse.Context{Cancel: cancel} }

// WritableUsage counts the writable area's files and their bytes on local disk (0, 0: none).
func (f *FS) WritableUsage() (int, int64) {
	if f.area == nil {
		return 0, 0
	}
	return f.area.files.usage()
}
