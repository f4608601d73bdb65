package tier

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/storetest"
)

// lying serves every chunk with wrong bytes (a corrupt origin).
type lying struct{ chunkstore.Getter }

func (l lying) GetChunk(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	return nil, &chunkstore.CorruptError{Kind: "chunk", Digest: d, Where: "lying", Err: errors.New("bad bytes")}
}

func TestTieredAsksInOrderAndCounts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, _ := local.Open(filepath.Join(dir, "a"), local.Options{})
	b, _ := local.Open(filepath.Join(dir, "b"), local.Options{})
	c1 := chunkstore.NewChunk(storetest.Data(1, 4096))
	c2 := chunkstore.NewChunk(storetest.Data(2, 4096))
	a.PutChunk(ctx, c1)
	b.PutChunk(ctx, c1)
	b.PutChunk(ctx, c2)
	tr := New([]chunkstore.Getter{lying{a}, a, b}, nil)
	if ch, i, err := tr.GetChunkFrom(ctx, c1.Digest()); err != nil || i != 1 || ch.Digest() != c1.Digest() {
		t.Fatalf("c1: tier %d, %v", i, err)
	}
	if _, i, err := tr.GetChunkFrom(ctx, c2.Digest()); err != nil || i != 2 {
		t.Fatalf("c2: tier %d, %v", i, err)
	}
	missing := chunkstore.Sum([]byte("missing"))
	if _, _, err := tr.GetChunkFrom(ctx, missing); err == nil {
		t.Fatalf("missing chunk: %v", err)
	}
	s := tr.Snapshots()
	if s[0].Corrupt != 3 || s[1].Fetches != 1 || s[1].Misses != 2 || s[2].Fetches != 1 || s[2].Misses != 1 {
		t.Fatalf("counters %+v", s)
	}
	if s[1].HitRatio != 1.0/3 {
		t.Fatalf("hit ratio %v", s[1].HitRatio)
	}
	if _, err := tr.GetManifest(ctx, missing); !chunkstore.IsNotFound(err) {
		t.Fatalf("manifest no tier has: %v, want not found", err)
	}
	if ok, _ := tr.HasChunk(ctx, c2.Digest()); !ok {
		t.Fatal("HasChunk of a chunk the last tier has")
	}
	if _, err := New(nil, nil).GetChunk(ctx, c1.Digest()); !chunkstore.IsNotFound(err) {
		t.Fatalf("no tiers: %v", err)
	}
}
