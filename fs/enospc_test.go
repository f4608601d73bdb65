package fs

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/importer"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/storetest"
)

// TestFullDisk: the state directory on a real tmpfs that nova's own files fill up. Nova's
// writes get ENOSPC and what it wrote before stays intact; an image already local keeps
// reading; a fetch of an image that is not local answers the origin's bytes or EIO, never
// others, and leaves no partial object; an import and an adoption fail and leave nothing but
// the download; once space is freed, the same fetch and adoption succeed.
func TestFullDisk(t *testing.T) {
	dir := t.TempDir()
	origin, err := local.Open(filepath.Join(dir, "origin"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(dir, "small")
	os.Mkdir(small, 0o755)
	if err := unix.Mount("basefs-t24", small, "tmpfs", 0, "size=24m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(small, unix.MNT_DETACH) }) // after the mount's own cleanup
	e := mountEnv(t, small, origin, envOptions{writable: true, memoryBytes: 1})
	ctx := context.Background()

	present, _ := e.importImageAt(1<<20, 3<<20, 1, [2]int64{0, 3 << 20})
	wantPresent := fileSHA(t, e.path(present.String())) // now local
	missing, raw := e.importImageAt(1<<20, 8<<20, 2, [2]int64{0, 8 << 20})
	wantMissing := fileSHA(t, raw)
	// Its manifest local, none of its chunks: the fetches happen on the full disk.
	half, halfRaw := e.importImageAt(1<<20, 4<<20, 3, [2]int64{0, 4 << 20})
	wantHalf := fileSHA(t, halfRaw)
	if _, err := os.Stat(e.path(half.String())); err != nil {
		t.Fatal(err)
	}
	swap := bytes.Repeat([]byte("nova's swap "), 1<<16)
	if err := os.WriteFile(e.path("swap_1"), swap, 0o644); err != nil {
		t.Fatal(err)
	}
	dl := storetest.Data(9, 1<<20)
	sum := sha1.Sum([]byte("a downloaded image"))
	nova := hex.EncodeToString(sum[:])
	if err := os.WriteFile(e.path(nova+".part"), dl, 0o644); err != nil {
		t.Fatal(err)
	}

	// nova fills the disk with an ephemeral disk: ENOSPC to nova, nothing else.
	f, err := os.OpenFile(e.path("ephemeral_0"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 1<<20)
	for i := 0; ; i++ {
		if _, err = f.Write(block); err != nil {
			break
		}
		if i > 64 {
			t.Fatal("24 MiB tmpfs never filled")
		}
	}
	if err2 := f.Sync(); !errors.Is(err, syscall.ENOSPC) && !errors.Is(err2, syscall.ENOSPC) {
		t.Fatalf("writing past the end of the disk: %v, want ENOSPC", err)
	}
	f.Close()
	if got, _ := os.ReadFile(e.path("swap_1")); !bytes.Equal(got, swap) {
		t.Error("nova's swap file changed when the disk filled")
	}
	if got := fileSHA(t, e.path(present.String())); got != wantPresent {
		t.Error("a local image reads other bytes on a full disk")
	}

	// Fetches on a full disk: the origin's bytes, or EIO; never others.
	for _, c := range []struct {
		what string
		d    chunkstore.Digest
		want [32]byte
	}{{"image not local", missing, wantMissing}, {"chunks not local", half, wantHalf}} {
		b, err := os.ReadFile(e.path(c.d.String()))
		switch {
		case err == nil && sha256.Sum256(b) != c.want:
			t.Fatalf("%s: a fetch on a full disk returned other bytes", c.what)
		case err != nil && !errors.Is(err, syscall.EIO):
			t.Fatalf("%s: a fetch on a full disk: %v, want the bytes or EIO", c.what, err)
		}
		t.Logf("%s, read on a full disk: %d bytes, err=%v", c.what, len(b), err)
	}
	checkObjects(t, e.state)

	// An import into the full state, and an adoption: they fail and leave nothing.
	if _, err := importer.Import(ctx, e.state, raw, importer.Options{ChunkSize: 1 << 20}); err == nil {
		t.Log("import on a full disk succeeded (its chunks were all present)")
	}
	if err := os.Rename(e.path(nova+".part"), e.path(nova)); err == nil {
		t.Error("adoption on a full disk succeeded")
	}
	if got, _ := os.ReadFile(e.path(nova + ".part")); !bytes.Equal(got, dl) {
		t.Error("the download is gone or changed after a failed adoption")
	}
	checkObjects(t, e.state)

	// Space freed: the same fetch and adoption succeed (a full disk is not a permanent fault).
	if err := os.Remove(e.path("ephemeral_0")); err != nil {
		t.Fatal(err)
	}
	if got := fileSHA(t, e.path(missing.String())); got != wantMissing {
		t.Error("the image fetched after space was freed reads other bytes")
	}
	if got := fileSHA(t, e.path(half.String())); got != wantHalf {
		t.Error("the chunks fetched after space was freed read other bytes")
	}
	if err := os.Rename(e.path(nova+".part"), e.path(nova)); err != nil {
		t.Errorf("adoption after space was freed: %v", err)
	}
	if got, _ := os.ReadFile(e.path(nova)); !bytes.Equal(got, dl) {
		t.Error("the adopted image reads other bytes")
	}
	checkObjects(t, e.state)
}

// checkObjects fails t unless every chunk and manifest object in s verifies and its temporary
// directory is empty: nothing half-written was left or kept.
func checkObjects(t *testing.T, s *local.Store) {
	t.Helper()
	ctx := context.Background()
	s.WalkChunks(ctx, func(d chunkstore.Digest) error {
		if _, err := s.GetChunk(ctx, d); err != nil {
			t.Errorf("chunk %s: %v", d.Short(), err)
		}
		return nil
	})
	s.WalkManifests(ctx, func(d chunkstore.Digest) error {
		if _, err := s.GetManifest(ctx, d); err != nil {
			t.Errorf("manifest %s: %v", d.Short(), err)
		}
		return nil
	})
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), "tmp")); len(ents) != 0 {
		t.Errorf("%d temporary files left in the state", len(ents))
	}
}
