package fs

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/chunkstore"
)

func TestNamesThatDoNotExist(t *testing.T) {
	e := newEnv(t, envOptions{})
	d, _ := e.importImage(3<<30/2, 1, [2]int64{0, 4096}) // 1.5 GiB
	unknown := chunkstore.Sum([]byte("unknown")).String()
	for _, name := range []string{
		unknown, unknown + "_1", d.String() + "_1", // 1 GiB < 1.5 GiB
		d.String() + "_0", d.String() + "_01", d.String() + "_-2", d.String() + "_ 2", d.String() + "_99999999999999999999",
		strings.ToUpper(d.String()), d.String()[:63], "x", "lost+found", ".hidden",
	} {
		if _, err := os.Stat(e.path(name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat %q = %v; want ENOENT", name, err)
		}
	}
	if _, err := os.Stat(e.path(d.String() + "_2")); err != nil {
		t.Errorf("_2 of a 1.5 GiB image: %v", err)
	}
}

func TestNoOriginUnknownImage(t *testing.T) {
	e := newEnv(t, envOptions{noOrigin: true})
	if _, err := os.Stat(e.path(chunkstore.Sum([]byte("x")).String())); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unknown image without origins: %v; want ENOENT", err)
	}
	if ents, err := os.ReadDir(e.mnt); err != nil || len(ents) != 0 {
		t.Fatalf("readdir of an empty state: %v, %v", ents, err)
	}
}

// TestViewsBounded: one image's resized views in the node table are bounded (MaxViews): a
// caller looking up every size gets EMLINK past it, and the image itself still answers.
func TestViewsBounded(t *testing.T) {
	e := newEnv(t, envOptions{})
	d, _ := e.importImage(1<<20, 4, [2]int64{0, 1 << 20})
	for n := 1; n <= MaxViews+5; n++ {
		_, err := os.Stat(e.path(d.String() + "_" + strconv.Itoa(n)))
		if n <= MaxViews && err != nil {
			t.Fatalf("view %d: %v", n, err)
		}
		if n > MaxViews && !errors.Is(err, syscall.EMLINK) {
			t.Fatalf("view %d past the bound: %v, want EMLINK", n, err)
		}
	}
	if _, err := os.Stat(e.path(d.String())); err != nil {
		t.Fatal(err)
	}
}

// TestImageMetadataOperations: utime records use (mtime), st_blocks counts what is held
// locally, unlink is refused while the image is open and removes it (not a shared chunk)
// when it is not.
func TestImageMetadataOperations(t *testing.T) {
	e := newEnv(t, envOptions{writable: true})
	// 1 MiB chunks (the previous default; manifests carry their own size): a has 3 data
	// chunks, b's one is a's first.
	a, _ := e.importImageAt(1<<20, 4<<20, 1, [2]int64{0, 3 << 20})
	b, _ := e.importImageAt(1<<20, 4<<20, 1, [2]int64{0, 1 << 20}) // shares chunk 0 with a
	pa, pb := e.path(a.String()), e.path(b.String())
	fi, err := os.Stat(pa)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	syscall.Stat(pa, &st)
	if st.Blocks != 0 {
		t.Fatalf("st_blocks %d before any read", st.Blocks)
	}
	os.ReadFile(pa)
	os.ReadFile(pb)
	time.Sleep(1100 * time.Millisecond) // attributes are kept 1 s
	syscall.Stat(pa, &st)
	if st.Blocks*512 < 3<<20 {
		t.Fatalf("st_blocks %d after reading 3 MiB of data", st.Blocks)
	}
	// Holes are told from the manifest (cp and qemu-img skip them without reading).
	h, _ := os.Open(pa)
	if off, err := unix.Seek(int(h.Fd()), 0, unix.SEEK_HOLE); err != nil || off != 3<<20 {
		t.Errorf("SEEK_HOLE from 0: %d %v, want %d", off, err, 3<<20)
	}
	if off, err := unix.Seek(int(h.Fd()), 1<<20+5, unix.SEEK_DATA); err != nil || off != 1<<20+5 {
		t.Errorf("SEEK_DATA in data: %d %v", off, err)
	}
	if _, err := unix.Seek(int(h.Fd()), 3<<20, unix.SEEK_DATA); !errors.Is(err, syscall.ENXIO) {
		t.Errorf("SEEK_DATA in the trailing hole: %v, want ENXIO", err)
	}
	h.Close()
	past := time.Now().Add(-72 * time.Hour).Truncate(time.Second)
	if err := os.Chtimes(pa, past, past); err != nil {
		t.Fatalf("utime with times: %v", err)
	}
	if fi, _ = os.Stat(pa); !fi.ModTime().Equal(past) {
		t.Fatalf("mtime %v after utime to %v", fi.ModTime(), past)
	}
	if err := unix.UtimesNano(pa, nil); err != nil {
		t.Fatalf("utime NULL: %v", err)
	}
	if fi, _ = os.Stat(pa); time.Since(fi.ModTime()) > time.Minute {
		t.Fatalf("mtime %v after utime(NULL)", fi.ModTime())
	}
	for what, err := range map[string]error{
		"chmod": os.Chmod(pa, 0o644), "chown": os.Chown(pa, 1, 1), "truncate": os.Truncate(pa, 1),
	} {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s of an image: %v, want EROFS", what, err)
		}
	}
	f, _ := os.Open(pa)
	if err := os.Remove(pa); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("unlink of an open image: %v, want EBUSY", err)
	}
	f.Close()
	if err := os.Remove(pa); err != nil {
		t.Fatalf("unlink of an unused image: %v", err)
	}
	names, _ := os.ReadDir(e.mnt)
	if len(names) != 1 || names[0].Name() != b.String() {
		t.Fatalf("readdir after unlink: %v", names)
	}
	if got := e.mgr.Stats(); got.ImagesRemoved != 1 || got.ChunksRemoved != 2 || got.RemoveRefused != 1 {
		t.Fatalf("manager stats %+v: want 1 image and its 2 unshared chunks removed, 1 refusal", got)
	}
	e.cache.SetVerify(true)
	if got, err := os.ReadFile(pb); err != nil || len(got) != 4<<20 {
		t.Fatalf("the image sharing a chunk: %v", err)
	}
}
