package fs

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/cache/control"
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
	// ControlSocket is published as the root's control.Xattr (empty: none).
	ControlSocket string
	Logger        *slog.Logger
}

// root is the mount's only directory.
type root struct {
	gofs.Inode
	cfg Config
}

var (
	_ gofs.NodeLookuper   = (*root)(nil)
	_ gofs.NodeReaddirer  = (*root)(nil)
	_ gofs.NodeGetattrer  = (*root)(nil)
	_ gofs.NodeGetxattrer = (*root)(nil)
	_ gofs.NodeSetattrer  = (*root)(nil)
)

// New returns the root of a basefs tree.
func New(cfg Config) gofs.InodeEmbedder {
	if cfg.Resolver == nil {
		cfg.Resolver = DigestResolver{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &root{cfg: cfg}
}

// How long the kernel may keep names and attributes: images are immutable, so positive
// answers can be kept long; a missing name may appear (imported, fetched) and is kept briefly.
const (
	positiveTimeout = time.Hour
	negativeTimeout = time.Second
)

func (r *root) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fuse.S_IFDIR | 0o555
	out.Nlink = 2
	out.SetTimeout(positiveTimeout)
	return 0
}

func (r *root) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (r *root) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if attr != control.Xattr || r.cfg.ControlSocket == "" {
		return 0, syscall.ENODATA
	}
	v := r.cfg.ControlSocket
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// Lookup maps a name to a view: `<ref>` or `<ref>_<N>`. The image's manifest is fetched from
// the origins if the host does not have it yet.
func (r *root) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n, ok := ParseName(name)
	if !ok {
		out.SetEntryTimeout(negativeTimeout)
		return nil, syscall.ENOENT
	}
	d, ok, err := resolve(ctx, r.cfg.Resolver, n.Ref)
	if err != nil {
		r.cfg.Logger.Error("lookup failed", "name", name, "err", err)
		if chunkstore.IsNotFound(err) {
			out.SetEntryTimeout(negativeTimeout)
			return nil, syscall.ENOENT
		}
		return nil, syscall.EIO
	}
	if !ok {
		out.SetEntryTimeout(negativeTimeout)
		return nil, syscall.ENOENT
	}
	im, err := r.cfg.Images.Image(ctx, d)
	if err != nil {
		if chunkstore.IsNotFound(err) {
			out.SetEntryTimeout(negativeTimeout)
			return nil, syscall.ENOENT
		}
		r.cfg.Logger.Error("lookup failed", "name", name, "err", err)
		return nil, syscall.EIO
	}
	size := im.Size()
	if n.ViewGiB > 0 {
		size = n.ViewGiB * GiB
		if size < im.Size() {
			// nova never asks for a view smaller than its image: it does not exist.
			out.SetEntryTimeout(negativeTimeout)
			return nil, syscall.ENOENT
		}
	}
	v := &view{im: im, size: size, log: r.cfg.Logger}
	ch := r.NewInode(ctx, v, gofs.StableAttr{Mode: fuse.S_IFREG, Ino: inodeNumber(d, n.ViewGiB)})
	v.fill(&out.Attr)
	out.SetEntryTimeout(positiveTimeout)
	out.SetAttrTimeout(positiveTimeout)
	return ch, 0
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

// Readdir lists the images known locally (not their resized views, which are endless).
func (r *root) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	ds, err := r.cfg.Images.Images(ctx)
	if err != nil {
		r.cfg.Logger.Error("readdir failed", "err", err)
		return nil, syscall.EIO
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].String() < ds[j].String() })
	entries := make([]fuse.DirEntry, len(ds))
	for i, d := range ds {
		entries[i] = fuse.DirEntry{Name: d.String(), Mode: fuse.S_IFREG, Ino: inodeNumber(d, 0)}
	}
	if r.cfg.Aliases != nil {
		as, err := r.cfg.Aliases.Aliases(ctx)
		if err != nil {
			r.cfg.Logger.Error("readdir: aliases", "err", err)
			return nil, syscall.EIO
		}
		names := make([]string, 0, len(as))
		for n := range as {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			entries = append(entries, fuse.DirEntry{Name: n, Mode: fuse.S_IFREG, Ino: inodeNumber(as[n], 0)})
		}
	}
	return gofs.NewListDirStream(entries), 0
}

// view is a read-only file: an image, zero-extended to size.
type view struct {
	gofs.Inode
	im   *cache.Image
	size int64
	log  *slog.Logger
}

var (
	_ gofs.NodeGetattrer = (*view)(nil)
	_ gofs.NodeOpener    = (*view)(nil)
	_ gofs.NodeReader    = (*view)(nil)
	_ gofs.NodeSetattrer = (*view)(nil)
)

// handle is an open file on a view; its release ends the image's use.
type handle struct{ im *cache.Image }

var _ gofs.FileReleaser = (*handle)(nil)

func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.im.Release()
	return 0
}

func (v *view) fill(a *fuse.Attr) {
	a.Mode = fuse.S_IFREG | 0o444
	a.Size = uint64(v.size)
	a.Blocks = uint64((v.size + 511) / 512)
	a.Blksize = 1 << 20
	a.Nlink = 1
}

func (v *view) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	v.fill(&out.Attr)
	out.SetTimeout(positiveTimeout)
	return 0
}

func (v *view) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// Open refuses writing. The kernel may keep the file's pages (images are immutable and only
// verified bytes are ever served); an O_DIRECT open (qemu's cache='none') gets direct I/O.
func (v *view) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC|syscall.O_APPEND|syscall.O_CREAT) != 0 {
		return nil, 0, syscall.EROFS
	}
	v.im.Acquire() // an open image is in use until the handle is released
	h := &handle{im: v.im}
	if flags&syscall.O_DIRECT != 0 || v.im.Provisional() {
		// A provisional image (a Glance image before its whole-image check) may yet be marked
		// bad: its bytes must not outlive that in the kernel's page cache.
		return h, fuse.FOPEN_DIRECT_IO, 0
	}
	return h, fuse.FOPEN_KEEP_CACHE, 0
}

// Read serves [off, off+len(dest)) of the view: the image's verified bytes, then zeros.
func (v *view) Read(ctx context.Context, f gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= v.size {
		return fuse.ReadResultData(nil), 0
	}
	dest = dest[:min(int64(len(dest)), v.size-off)]
	n := 0
	if off < v.im.Size() {
		var err error
		n, err = v.im.ReadAt(ctx, dest, off)
		if err != nil {
			v.log.Error("read failed", "image", v.im.Digest().String(), "offset", off, "length", len(dest), "err", err)
			return nil, syscall.EIO
		}
	}
	clear(dest[n:])
	return fuse.ReadResultData(dest), 0
}

// MountOptions are the FUSE options basefs mounts with: read-only, readable by qemu (which
// runs as another user), large reads.
func MountOptions(debug bool) *gofs.Options {
	pt := positiveTimeout
	nt := negativeTimeout
	return &gofs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther:   true,
			FsName:       "basefs",
			Name:         "basefs",
			Options:      []string{"ro", "default_permissions"},
			MaxWrite:     1 << 20,
			MaxReadAhead: 1 << 20,
			DirectMount:  true,
			// Read replies come from memory; splicing them buys nothing and 1 MiB replies
			// exceed the pipe size.
			DisableSplice: true,
			Debug:         debug,
		},
		EntryTimeout:    &pt,
		AttrTimeout:     &pt,
		NegativeTimeout: &nt,
		// Inode numbers come from inodeNumber; the automatic ones are for nothing else.
		FirstAutomaticIno: 1 << 62,
	}
}

// CleanStaleMount detaches a mount left at dir by a daemon that died: its mount point then
// answers ENOTCONN. A live mount or a plain directory is left alone.
func CleanStaleMount(dir string) error {
	// statfs always reaches the daemon (stat may be answered from the kernel's cache).
	var st unix.Statfs_t
	err := unix.Statfs(dir, &st)
	if err == nil || !errors.Is(err, syscall.ENOTCONN) {
		return nil
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("stale mount at %s (its daemon died): unmount: %w", dir, err)
	}
	return nil
}

// Mount mounts the tree at dir and returns the running server. Call Unmount and Wait on it.
func Mount(dir string, cfg Config, debug bool) (*fuse.Server, error) {
	if err := CleanStaleMount(dir); err != nil {
		return nil, err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("mount point %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("mount point %s: not a directory", dir)
	}
	srv, err := gofs.Mount(dir, New(cfg), MountOptions(debug))
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	return srv, nil
}
