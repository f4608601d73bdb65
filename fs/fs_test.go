package fs

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/cache/glanceimg"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/importer"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/storetest"
	"github.com/basefs/basefs/chunkstore/testenv"
)

// env is a real mount over a fresh local state, with an origin holding imported images.
type env struct {
	t      testing.TB
	origin *local.Store
	state  *local.Store
	cache  *cache.Cache
	mgr    *cache.Manager // with writable
	mnt    string
}

type envOptions struct {
	memoryBytes int64
	// wrap, when set, wraps the origin (fault injection).
	wrap func(chunkstore.Getter) chunkstore.Getter
	// noOrigin mounts without any origin.
	noOrigin bool
	// writable mounts as the daemon does: with the writable area, nova's names and the
	// cache manager taking utime, unlink and adoption.
	writable bool
	// front are origins asked before the origin (shared tiers), in order.
	front []*local.Store
	// access is who may use the mount besides root.
	access Access
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedFUSE(t)
	dir := t.TempDir()
	origin, err := local.Open(filepath.Join(dir, "origin"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return mountEnv(t, dir, origin, o)
}

func mountEnv(t testing.TB, dir string, origin *local.Store, o envOptions) *env {
	t.Helper()
	state, err := local.Open(filepath.Join(dir, "state"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var origins []chunkstore.Getter
	for _, f := range o.front {
		origins = append(origins, f)
	}
	if !o.noOrigin {
		ro, err := local.Open(origin.Root(), local.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		var g chunkstore.Getter = ro
		if o.wrap != nil {
			g = o.wrap(g)
		}
		origins = append(origins, g)
	}
	mem := o.memoryBytes
	if mem == 0 {
		mem = 64 << 20
	}
	names := glanceimg.NewNames(state.Root())
	c, err := cache.New(cache.Config{Local: state, Origins: origins, MemoryBytes: mem, Names: names})
	if err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	os.MkdirAll(mnt, 0o755)
	cfg := Config{Images: c, Access: o.access}
	var mgr *cache.Manager
	if o.writable {
		if mgr, err = cache.NewManager(c, cache.ManagerConfig{CacheSize: -1}); err != nil {
			t.Fatal(err)
		}
		cfg.Files = FilesDir(state.Root())
		cfg.Maintainer = mgr
		gl := glanceimg.New(glanceimg.Config{Cache: c, Names: names})
		cfg.Resolver = Resolvers{DigestResolver{}, glanceimg.Resolver{L: gl}}
		cfg.Aliases = gl
	}
	srv, err := Mount(mnt, cfg, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
			// This process serves the mount: never leave it mounted for the exit to block on.
			abortConnection(mnt)
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
		c.Close()
	})
	return &env{t: t, origin: origin, state: state, cache: c, mgr: mgr, mnt: mnt}
}

// importImage writes a raw image of size bytes (data in the given extents, zeros elsewhere)
// and imports it into the origin at the default chunk size; it returns the digest and the raw
// file's path.
func (e *env) importImage(size int64, seed uint64, extents ...[2]int64) (chunkstore.Digest, string) {
	e.t.Helper()
	return e.importImageAt(chunkstore.DefaultChunkSize, size, seed, extents...)
}

// importImageAt is importImage at chunk size cs.
func (e *env) importImageAt(cs, size int64, seed uint64, extents ...[2]int64) (chunkstore.Digest, string) {
	e.t.Helper()
	raw := filepath.Join(e.t.TempDir(), "image.raw")
	f, err := os.Create(raw)
	if err != nil {
		e.t.Fatal(err)
	}
	f.Truncate(size)
	for i, x := range extents {
		f.WriteAt(storetest.Data(seed+uint64(i), int(x[1])), x[0])
	}
	f.Close()
	r, err := importer.Import(context.Background(), e.origin, raw, importer.Options{ChunkSize: cs})
	if err != nil {
		e.t.Fatal(err)
	}
	return r.Digest, raw
}

func (e *env) path(name string) string { return filepath.Join(e.mnt, name) }

func fileSHA(t testing.TB, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// readDirect reads len(p) bytes at off with O_DIRECT, so the kernel's page cache cannot answer.
func readDirect(path string, p []byte, off int64) (int, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.ReadAt(p, off)
}

// alignedBuf returns an n-byte buffer aligned to 4096 for O_DIRECT.
func alignedBuf(n int) []byte {
	b := make([]byte, n+4096)
	off := 4096 - int(uintptr(unsafe.Pointer(&b[0]))&4095)
	return b[off : off+n]
}

// abortConnection aborts the FUSE connection mounted at mnt (fusectl), so nothing can stay
// blocked on a server that will never answer.
func abortConnection(mnt string) {
	// Find the connection from /proc/self/mountinfo: stat of the mount point could itself block.
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	if _, err := os.Stat("/sys/fs/fuse/connections/"); err == nil {
		unix.Mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, "")
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == mnt {
			if _, minor, ok := strings.Cut(f[2], ":"); ok {
				os.WriteFile("/sys/fs/fuse/connections/"+minor+"/abort", []byte("1"), 0o200)
			}
		}
	}
}
