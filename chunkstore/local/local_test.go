package local

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/storetest"
)

func TestStoreSuite(t *testing.T) {
	storetest.Run(t, storetest.Backend{
		New: func(t *testing.T) chunkstore.Store {
			s, err := Open(t.TempDir(), Options{})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Corrupt: func(t *testing.T, s chunkstore.Store, d chunkstore.Digest) {
			FlipByte(t, s.(*Store).ChunkPath(d), -1)
		},
	})
}

// FlipByte flips one byte of file p at off (off < 0: the middle of the payload).
func FlipByte(t *testing.T, p string, off int64) {
	t.Helper()
	os.Chmod(p, 0o644)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off = chunkstore.ObjectHeaderSize + (int64(len(b))-chunkstore.ObjectHeaderSize)/2
	}
	b[off] ^= 0x40
	if err := os.WriteFile(p, b, 0o444); err != nil {
		t.Fatal(err)
	}
}

func TestBatchAbortLeavesNothing(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.NewBatch()
	c := chunkstore.NewChunk(storetest.Data(1, 4096))
	if added, _, err := b.PutChunk(ctx, c); err != nil || !added {
		t.Fatalf("batch put = %v, %v", added, err)
	}
	if added, _, _ := b.PutChunk(ctx, c); added {
		t.Fatal("the same chunk was added to a batch twice")
	}
	b.Abort()
	if ok, _ := s.HasChunk(ctx, c.Digest()); ok {
		t.Fatal("aborted batch left its chunk in the store")
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), "tmp")); len(ents) != 0 {
		t.Fatalf("aborted batch left %d temp files", len(ents))
	}

	b, _ = s.NewBatch()
	b.PutChunk(ctx, c)
	created, err := b.Commit(ctx)
	if err != nil || len(created) != 1 || created[0] != c.Digest() {
		t.Fatalf("commit = %v, %v", created, err)
	}
	if _, err := s.GetChunk(ctx, c.Digest()); err != nil {
		t.Fatal(err)
	}
}

func TestReadOnlyRefusesWrites(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutChunk(context.Background(), chunkstore.NewChunk([]byte("x"))); err == nil {
		t.Fatal("read-only store accepted a put")
	}
	if _, err := Open(filepath.Join(dir, "absent"), Options{ReadOnly: true}); err == nil {
		t.Fatal("opening an absent directory read-only succeeded")
	}
}

func TestUnwritableState(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "file")
	os.WriteFile(f, nil, 0o644)
	if _, err := Open(filepath.Join(f, "state"), Options{}); err == nil {
		t.Fatal("Open under a regular file succeeded")
	}
}
