package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/storetest"
)

// TestObjectsAreRegularFilesOfBoundedSize: a dir:// origin (or a state) whose object names
// are a FIFO, a symbolic link or a huge file answers at once with a corrupt object, without
// waiting for a writer, following the link or reading the file.
func TestObjectsAreRegularFilesOfBoundedSize(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "s"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	real := chunkstore.NewChunk(storetest.Data(1, 4096))
	if _, err := s.PutChunk(ctx, real); err != nil {
		t.Fatal(err)
	}
	fifo := chunkstore.NewChunk(storetest.Data(2, 4096)).Digest()
	link := chunkstore.NewChunk(storetest.Data(3, 4096)).Digest()
	huge := chunkstore.Sum([]byte("huge"))
	for _, p := range []string{s.ChunkPath(fifo), s.ChunkPath(link), s.ManifestPath(huge)} {
		os.MkdirAll(filepath.Dir(p), 0o755)
	}
	if err := syscall.Mkfifo(s.ChunkPath(fifo), 0o644); err != nil {
		t.Fatal(err)
	}
	// A link to a good object elsewhere: the bytes would verify, but the name is a link.
	outside := filepath.Join(dir, "outside")
	b, _ := os.ReadFile(s.ChunkPath(real.Digest()))
	os.WriteFile(outside, b, 0o644)
	os.Rename(s.ChunkPath(real.Digest()), s.ChunkPath(link)) // keep a valid object name free
	os.Remove(s.ChunkPath(link))
	if err := os.Symlink(outside, s.ChunkPath(real.Digest())); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Create(s.ManifestPath(huge))
	f.Truncate(MaxManifestSize + 1) // sparse: costs no disk
	f.Close()

	for what, get := range map[string]func() error{
		"fifo chunk":    func() error { _, err := s.GetChunk(ctx, fifo); return err },
		"fifo raw":      func() error { _, _, err := s.ReadChunkData(fifo); return err },
		"fifo open":     func() error { _, _, err := s.OpenRaw(fifo); return err },
		"linked chunk":  func() error { _, err := s.GetChunk(ctx, real.Digest()); return err },
		"huge manifest": func() error { _, err := s.GetManifest(ctx, huge); return err },
	} {
		done := make(chan error, 1)
		go func() { done <- get() }()
		select {
		case err := <-done:
			var ce *chunkstore.CorruptError
			if !errors.As(err, &ce) && !(what == "fifo open" && errors.Is(err, syscall.ELOOP)) {
				t.Errorf("%s: %v, want a corrupt object", what, err)
			}
			if what == "huge manifest" && (err == nil || !strings.Contains(err.Error(), "more than")) {
				t.Errorf("%s: %v, want refused by size", what, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: still waiting after 5 s", what)
			os.WriteFile(s.ChunkPath(fifo), nil, 0) // let a reader blocked on the FIFO go
		}
	}
}
