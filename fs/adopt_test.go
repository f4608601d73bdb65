package fs

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/storetest"
)

// TestAdoptionWhileOpen: nova's download adopted as an image while a handle on it is still
// open (the kernel sends RELEASE after close returns, so it can follow the rename). The
// handle's release goes to the file it opened — the download's orphan is removed — and never
// to the image: an image open through its name stays in use until that one is closed.
func TestAdoptionWhileOpen(t *testing.T) {
	e := newEnv(t, envOptions{writable: true})
	dl := storetest.Data(11, 3<<20)
	sum := sha1.Sum([]byte("an image downloaded while held open"))
	nova := hex.EncodeToString(sum[:])
	part, err := os.OpenFile(e.path(nova+".part"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := part.Write(dl); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(e.path(nova+".part"), e.path(nova)); err != nil {
		t.Fatalf("adoption with the download open: %v", err)
	}
	img, err := os.Open(e.path(nova))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	var ds []chunkstore.Digest // the state's only image is the adopted one
	e.state.WalkManifests(context.Background(), func(d chunkstore.Digest) error { ds = append(ds, d); return nil })
	if len(ds) != 1 {
		t.Fatalf("the state holds %d images after one adoption", len(ds))
	}
	im, err := e.cache.Image(context.Background(), ds[0])
	if err != nil {
		t.Fatal(err)
	}
	if !im.Open() {
		t.Fatal("the image opened through its name is not in use")
	}
	part.Close() // RELEASE of the download's handle, after the rename
	orphans := FilesDir(e.state.Root()) + ".orphans"
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && (countEntries(orphans) > 0 || !im.Open()) {
		time.Sleep(20 * time.Millisecond)
	}
	if !im.Open() {
		t.Error("closing the download's handle released the image opened through its name: it looks unused while open")
	}
	if n := countEntries(orphans); n > 0 {
		t.Errorf("the download's orphan is still in %s (%d entries) after its last handle closed", orphans, n)
	}
	got := make([]byte, len(dl))
	if _, err := img.ReadAt(got, 0); err != nil || string(got) != string(dl) {
		t.Fatalf("the adopted image reads other bytes (%v)", err)
	}
}

func countEntries(dir string) int {
	es, _ := os.ReadDir(dir)
	return len(es)
}
