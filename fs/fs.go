package fs

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/fs/names"
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
// ids are its own deterministic inode numbers (inodeNumber): any process serving the same
// state answers for the ids the kernel already holds — the prerequisite for restarting the
// daemon under a live mount. File handles carry nothing (fh 0): every request names its node.
type FS struct {
	fuse.RawFileSystem // everything not implemented here answers ENOSYS
	cfg                Config
	nodes              *nodeTable
	files              *files   // nil: no writable area
	journal            *journal // of the writable area's requests that are not idempotent
	srv                *fuse.Server
	started            time.Time // the root's times

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
	f := &FS{RawFileSystem: fuse.NewDefaultRawFileSystem(), cfg: cfg, nodes: newNodeTable(cfg.NodeLog, cfg.Logger), started: time.Now()}
	if cfg.Files != "" {
		var err error
		if f.files, err = openFiles(cfg.Files); err != nil {
			return nil, err
		}
		if f.journal, err = openJournal(cfg.Files + ".journal"); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (f *FS) supervisor() int {
	if f.cfg.Supervisor == nil {
		return 0
	}
	return f.cfg.Supervisor()
}

// Init keeps the server, to tell the kernel about names that change under it.
func (f *FS) Init(s *fuse.Server) { f.srv = s }

// isFileNode reports whether node id n is a writable file (not the root, not an image).
func (f *FS) isFileNode(n uint64) bool {
	if n == fuse.FUSE_ROOT_ID || f.files == nil {
		return false
	}
	if _, ok := f.nodes.get(n); ok {
		return false
	}
	return f.files.isFile(n)
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

func (f *FS) rootAttr(a *fuse.Attr) {
	a.Ino = fuse.FUSE_ROOT_ID
	a.Mode = fuse.S_IFDIR | rootMode
	if f.files == nil {
		a.Mode &^= 0o200 // nothing can be created
	}
	a.Nlink = 2
	a.Owner = f.cfg.Access.owner()
	a.SetTimes(&f.started, &f.started, &f.started)
}

// viewAttr: a view is readable by its owner and group (qemu runs in the group); its mtime is the image's
// recorded use (nova's utime; what nova's image cache manager ages — not every read, which
// would make the kernel drop the image's cached pages) and its blocks the bytes of it held
// locally (what nova's disk usage counts).
func (f *FS) viewAttr(ino uint64, v *view, a *fuse.Attr) {
	a.Ino = ino
	a.Mode = fuse.S_IFREG | imageMode
	a.Size = uint64(v.size)
	a.Blocks = uint64((v.im.StoredBytes() + 511) / 512)
	a.Blksize = 1 << 20
	a.Nlink = 1
	a.Owner = f.cfg.Access.owner()
	t := v.im.RecordedUse()
	a.SetTimes(&t, &t, &t)
}

// Lookup maps a name to a view: `<ref>` or `<ref>_<N>`. The image's manifest is fetched from
// the origins if the host does not have it yet.
func (f *FS) Lookup(cancel <-chan struct{}, header *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	defer f.track("lookup")()
	if header.NodeId != fuse.FUSE_ROOT_ID {
		return fuse.ENOTDIR
	}
	ctx := ctxOf(cancel)
	if f.deny(header, "lookup") {
		return fuse.EACCES // before anything is resolved, fetched or allocated
	}
	if f.plain(name) {
		return f.lookupFile(name, out)
	}
	n, ok := ParseName(name)
	if !ok {
		out.SetEntryTimeout(negativeTimeout)
		return fuse.ENOENT
	}
	d, ok, err := resolve(ctx, f.cfg.Resolver, n.Ref)
	if err != nil {
		f.cfg.Logger.Error("lookup failed", "name", name, "err", err)
		if chunkstore.IsNotFound(err) {
			out.SetEntryTimeout(negativeTimeout)
			return fuse.ENOENT
		}
		return fuse.EIO
	}
	if !ok {
		out.SetEntryTimeout(negativeTimeout)
		return fuse.ENOENT
	}
	v, errno := f.view(ctx, node{digest: d, viewGiB: n.ViewGiB})
	if errno != 0 {
		if errno == syscall.ENOENT {
			out.SetEntryTimeout(negativeTimeout)
		}
		return fuse.Status(errno)
	}
	ino := inodeNumber(d, n.ViewGiB)
	if err := f.nodes.add(ino, node{digest: d, viewGiB: n.ViewGiB}); err != nil {
		f.cfg.Logger.Error("lookup: cannot record the node", "name", name, "err", err)
		if errors.Is(err, errTooManyViews) {
			return fuse.Status(syscall.EMLINK)
		}
		return fuse.EIO
	}
	out.NodeId = ino
	out.Generation = 1
	f.viewAttr(ino, v, &out.Attr)
	out.SetEntryTimeout(positiveTimeout)
	out.SetAttrTimeout(attrTimeout)
	return fuse.OK
}

// view resolves a node to its image and size (ENOENT: no such image or view).
func (f *FS) view(ctx context.Context, n node) (*view, syscall.Errno) {
	im, err := f.cfg.Images.Image(ctx, n.digest)
	if err != nil {
		if chunkstore.IsNotFound(err) {
			return nil, syscall.ENOENT
		}
		f.cfg.Logger.Error("image lookup failed", "image", n.digest.String(), "err", err)
		return nil, syscall.EIO
	}
	size := im.Size()
	if n.viewGiB > 0 {
		size = n.viewGiB * GiB
		if size < im.Size() {
			// nova never asks for a view smaller than its image: it does not exist.
			return nil, syscall.ENOENT
		}
	}
	return &view{im: im, size: size}, 0
}

// node returns the view behind a node id the kernel holds (looked up by this process or by
// an earlier one serving the same state).
func (f *FS) nodeView(cancel <-chan struct{}, ino uint64) (*view, fuse.Status) {
	n, ok := f.nodes.get(ino)
	if !ok {
		f.cfg.Logger.Error("request for an unknown node id", "ino", ino)
		return nil, fuse.ENOENT
	}
	v, errno := f.view(ctxOf(cancel), n)
	if errno != 0 {
		return nil, fuse.Status(errno)
	}
	return v, fuse.OK
}

// inodeNumber derives a view's inode number from its image and size, so it is the same in
// every daemon process (a restarted daemon serves the kernel's existing inodes). 0 and 1 are
// reserved (1 is the root).
func inodeNumber(d chunkstore.Digest, viewGiB int64) uint64 {
	var buf [chunkstore.DigestSize + 8]byte
	copy(buf[:], d[:])
	binary.LittleEndian.PutUint64(buf[chunkstore.DigestSize:], uint64(viewGiB))
	h := sha256.Sum256(buf[:])
	ino := binary.LittleEndian.Uint64(h[:8])
	if ino < 2 {
		ino += 2
	}
	return ino
}

// Forget: node ids are deterministic and the table small; nothing to free.
func (f *FS) Forget(nodeid, nlookup uint64) {}

func (f *FS) GetAttr(cancel <-chan struct{}, input *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer f.track("getattr")()
	if input.NodeId == fuse.FUSE_ROOT_ID {
		f.rootAttr(&out.Attr)
		out.SetTimeout(attrTimeout)
		return fuse.OK
	}
	if f.isFileNode(input.NodeId) {
		return f.fileAttr(input.NodeId, out)
	}
	v, st := f.nodeView(cancel, input.NodeId)
	if !st.Ok() {
		return st
	}
	f.viewAttr(input.NodeId, v, &out.Attr)
	out.SetTimeout(attrTimeout)
	return fuse.OK
}

func (f *FS) SetAttr(cancel <-chan struct{}, input *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	defer f.track("setattr")()
	if f.isFileNode(input.NodeId) {
		return f.setFileAttr(input, out)
	}
	if input.NodeId == fuse.FUSE_ROOT_ID {
		return fuse.EPERM
	}
	return f.setImageAttr(cancel, input, out)
}

func (f *FS) GetXAttr(cancel <-chan struct{}, header *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	defer f.track("getxattr")()
	if f.isFileNode(header.NodeId) {
		return f.fileGetXAttr(header.NodeId, attr, dest)
	}
	v := ""
	if header.NodeId == fuse.FUSE_ROOT_ID {
		switch attr {
		case names.ControlXattr:
			v = f.cfg.ControlSocket
		case names.SupervisorXattr:
			if pid := f.supervisor(); pid > 0 {
				v = strconv.Itoa(pid)
			}
		}
	}
	if v == "" {
		return 0, fuse.Status(syscall.ENODATA)
	}
	if len(dest) == 0 {
		return uint32(len(v)), fuse.OK
	}
	if len(dest) < len(v) {
		return uint32(len(v)), fuse.ERANGE
	}
	return uint32(copy(dest, v)), fuse.OK
}

func (f *FS) StatFs(cancel <-chan struct{}, input *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	defer f.track("statfs")()
	out.Bsize = 4096
	out.Frsize = 4096
	out.NameLen = 255
	if f.files != nil {
		// The writable area's file system: nova's free-space checks see the real numbers.
		var st syscall.Statfs_t
		if err := syscall.Fstatfs(f.files.dirFD, &st); err == nil {
			out.Blocks, out.Bfree, out.Bavail = st.Blocks, st.Bfree, st.Bavail
			out.Files, out.Ffree = st.Files, st.Ffree
			out.Bsize, out.Frsize = uint32(st.Bsize), uint32(st.Frsize)
		}
	}
	return fuse.OK
}

// Open refuses writing. The kernel may keep the file's pages (images are immutable and only
// verified bytes are ever served); an O_DIRECT open (qemu's cache='none') gets direct I/O.
func (f *FS) Open(cancel <-chan struct{}, input *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	defer f.track("open")()
	if f.isFileNode(input.NodeId) {
		return f.openFile(input.NodeId, input, out)
	}
	if input.Flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND|syscall.O_CREAT) != 0 {
		return fuse.Status(syscall.EROFS)
	}
	if f.deny(&input.InHeader, "open") {
		return fuse.EACCES // an open image is pinned (in use) until released
	}
	v, st := f.nodeView(cancel, input.NodeId)
	if !st.Ok() {
		return st
	}
	v.im.Acquire() // an open image is in use until the file is released
	out.OpenFlags = fuse.FOPEN_KEEP_CACHE
	if input.Flags&syscall.O_DIRECT != 0 || v.im.Lazy() {
		// A provisional image (a Glance image before its whole-image check) may yet be marked
		// bad: its bytes must not outlive that in the kernel's page cache.
		out.OpenFlags = fuse.FOPEN_DIRECT_IO
	}
	return fuse.OK
}

func (f *FS) Release(cancel <-chan struct{}, input *fuse.ReleaseIn) {
	defer f.track("release")()
	if f.isFileNode(input.NodeId) {
		f.files.released(input.NodeId)
		return
	}
	if v, st := f.nodeView(cancel, input.NodeId); st.Ok() {
		v.im.Release()
	}
}

// Read serves [off, off+len(buf)) of the view: the image's verified bytes, then zeros.
func (f *FS) Read(cancel <-chan struct{}, input *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	defer f.track("read")()
	// The hot path: one look in the node table for an image's view; a miss is a plain file.
	nd, ok := f.nodes.get(input.NodeId)
	if !ok {
		if f.isFileNode(input.NodeId) {
			return f.readFile(input.NodeId, input, buf)
		}
		f.cfg.Logger.Error("request for an unknown node id", "ino", input.NodeId)
		return nil, fuse.ENOENT
	}
	v, errno := f.view(ctxOf(cancel), nd)
	if errno != 0 {
		return nil, fuse.Status(errno)
	}
	off := int64(input.Offset)
	if off >= v.size {
		return fuse.ReadResultData(nil), fuse.OK
	}
	dest := buf[:min(int64(input.Size), int64(len(buf)), v.size-off)]
	if off+int64(len(dest)) <= v.im.Size() {
		// Within the image: a sequential stream's read may come from a buffer read ahead.
		b, release, err := v.im.ReadStream(ctxOf(cancel), dest, off)
		if err != nil {
			release()
			f.cfg.Logger.Error("read failed", "image", v.im.Digest().String(), "offset", off, "length", len(dest), "err", err)
			return nil, fuse.EIO
		}
		return &streamResult{b: b, release: release}, fuse.OK
	}
	n := 0
	if off < v.im.Size() {
		var err error
		n, err = v.im.ReadAt(ctxOf(cancel), dest, off)
		if err != nil {
			f.cfg.Logger.Error("read failed", "image", v.im.Digest().String(), "offset", off, "length", len(dest), "err", err)
			return nil, fuse.EIO
		}
	}
	clear(dest[n:])
	return fuse.ReadResultData(dest), fuse.OK
}

// streamResult is a read's reply in a buffer the cache lends until go-fuse has written it.
// Slices makes go-fuse write it as it is and call Done after the write; a result with Bytes
// alone is copied out and Done at once, when splice is off — too early to give the buffer back.
type streamResult struct {
	b       []byte
	release func()
}

func (r *streamResult) Bytes([]byte) ([]byte, fuse.Status) { return r.b, fuse.OK }
func (r *streamResult) Slices() ([][]byte, fuse.Status)    { return [][]byte{r.b}, fuse.OK }
func (r *streamResult) Size() int                          { return len(r.b) }
func (r *streamResult) Done()                              { r.release() }

// view is a read-only file: an image, zero-extended to size.
type view struct {
	im   *cache.Image
	size int64
}
