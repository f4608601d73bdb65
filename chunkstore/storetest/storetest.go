// Package storetest is the test suite every chunkstore.Store backend runs:
//
//	func TestSuite(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) chunkstore.Store { return newStore(t) })
//	}
//
// The factory returns a new, empty store for each subtest. Corrupt, when set, damages a stored
// chunk in place so the suite can check that reads detect it.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"

	"github.com/basefs/basefs/chunkstore"
)

// Backend describes the store under test.
type Backend struct {
	// New returns an empty store.
	New func(t *testing.T) chunkstore.Store
	// Corrupt flips a byte of the stored form of chunk d (nil: the corruption test is skipped
	// because the backend cannot be damaged from outside, which must be said in its tests).
	Corrupt func(t *testing.T, s chunkstore.Store, d chunkstore.Digest)
}

// Data returns n deterministic pseudo-random bytes from seed (incompressible).
func Data(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Run runs the suite.
func Run(t *testing.T, b Backend) {
	ctx := context.Background()
	t.Run("ChunkRoundTrip", func(t *testing.T) {
		s := b.New(t)
		for i, data := range [][]byte{
			Data(1, chunkstore.DefaultChunkSize),    // incompressible: stored raw
			bytes.Repeat([]byte("basefs "), 150000), // compressible: stored zstd
			Data(2, 1234),                           // short (a last chunk)
			append(make([]byte, 70000), 1),          // mostly zero
			Data(3, chunkstore.MaxChunkSize),        // largest
		} {
			c := chunkstore.NewChunk(data)
			if ok, err := s.HasChunk(ctx, c.Digest()); err != nil || ok {
				t.Fatalf("%d: HasChunk before put = %v, %v; want false, nil", i, ok, err)
			}
			created, err := s.PutChunk(ctx, c)
			if err != nil || !created {
				t.Fatalf("%d: PutChunk = %v, %v; want true, nil", i, created, err)
			}
			if ok, err := s.HasChunk(ctx, c.Digest()); err != nil || !ok {
				t.Fatalf("%d: HasChunk after put = %v, %v", i, ok, err)
			}
			got, err := s.GetChunk(ctx, c.Digest())
			if err != nil {
				t.Fatalf("%d: GetChunk: %v", i, err)
			}
			if got.Digest() != c.Digest() || !bytes.Equal(got.Data(), data) {
				t.Fatalf("%d: GetChunk returned other bytes", i)
			}
			created, err = s.PutChunk(ctx, c)
			if err != nil || created {
				t.Fatalf("%d: second PutChunk = %v, %v; want false, nil", i, created, err)
			}
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		s := b.New(t)
		d := chunkstore.Sum([]byte("absent"))
		if _, err := s.GetChunk(ctx, d); !chunkstore.IsNotFound(err) {
			t.Fatalf("GetChunk(absent) = %v; want ErrNotFound", err)
		}
		if _, err := s.GetManifest(ctx, d); !chunkstore.IsNotFound(err) {
			t.Fatalf("GetManifest(absent) = %v; want ErrNotFound", err)
		}
		if ok, err := s.HasManifest(ctx, d); ok || err != nil {
			t.Fatalf("HasManifest(absent) = %v, %v", ok, err)
		}
		if err := s.DeleteChunk(ctx, d); err != nil {
			t.Fatalf("DeleteChunk(absent) = %v; want nil", err)
		}
		if err := s.DeleteManifest(ctx, d); err != nil {
			t.Fatalf("DeleteManifest(absent) = %v; want nil", err)
		}
	})
	t.Run("Delete", func(t *testing.T) {
		s := b.New(t)
		c := chunkstore.NewChunk(Data(4, 5000))
		mustPut(t, s, c)
		if err := s.DeleteChunk(ctx, c.Digest()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetChunk(ctx, c.Digest()); !chunkstore.IsNotFound(err) {
			t.Fatalf("GetChunk after delete = %v; want ErrNotFound", err)
		}
	})
	t.Run("ConcurrentPutSameChunk", func(t *testing.T) {
		s := b.New(t)
		c := chunkstore.NewChunk(Data(5, 256<<10))
		var wg sync.WaitGroup
		var mu sync.Mutex
		creators := 0
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				created, err := s.PutChunk(ctx, c)
				if err != nil {
					t.Error(err)
				}
				if created {
					mu.Lock()
					creators++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if creators != 1 {
			t.Fatalf("%d of 16 concurrent puts reported creating the chunk; want exactly 1", creators)
		}
		got, err := s.GetChunk(ctx, c.Digest())
		if err != nil || !bytes.Equal(got.Data(), c.Data()) {
			t.Fatalf("after concurrent puts: %v", err)
		}
	})
	t.Run("Manifest", func(t *testing.T) {
		s := b.New(t)
		m := &chunkstore.Manifest{Size: 3<<20 + 5, ChunkSize: 1 << 20, Source: chunkstore.Source{Format: "qcow2"}}
		m.Chunks = []chunkstore.Digest{chunkstore.Sum([]byte("a")), {}, chunkstore.Sum([]byte("b")), chunkstore.Sum([]byte("c"))}
		d, err := s.PutManifest(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		want, _, _ := m.Digest()
		if d != want {
			t.Fatalf("PutManifest digest %s; want %s", d, want)
		}
		got, err := s.GetManifest(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if got.Size != m.Size || got.ChunkSize != m.ChunkSize || got.Source != m.Source || len(got.Chunks) != 4 || got.Chunks[1] != (chunkstore.Digest{}) || got.Chunks[3] != m.Chunks[3] {
			t.Fatalf("GetManifest returned %+v; want %+v", got, m)
		}
		if _, err := s.PutManifest(ctx, m); err != nil {
			t.Fatalf("second PutManifest: %v", err)
		}
		if _, err := s.PutManifest(ctx, &chunkstore.Manifest{Size: 10, ChunkSize: 1000}); err == nil {
			t.Fatal("PutManifest accepted an invalid manifest")
		}
	})
	t.Run("Walk", func(t *testing.T) {
		s := b.New(t)
		var want []string
		for i := range 20 {
			c := chunkstore.NewChunk(Data(uint64(100+i), 3000))
			mustPut(t, s, c)
			want = append(want, c.Digest().String())
		}
		var got []string
		if err := s.WalkChunks(ctx, func(d chunkstore.Digest) error { got = append(got, d.String()); return nil }); err != nil {
			t.Fatal(err)
		}
		sort.Strings(want)
		sort.Strings(got)
		if len(got) != len(want) {
			t.Fatalf("WalkChunks listed %d chunks; want %d", len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("WalkChunks listed %s; want %s", got[i], want[i])
			}
		}
		stop := errors.New("stop")
		n := 0
		if err := s.WalkChunks(ctx, func(chunkstore.Digest) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
			t.Fatalf("WalkChunks did not stop on the callback's error: %v after %d", err, n)
		}
		m := &chunkstore.Manifest{Size: 100, ChunkSize: 1 << 16, Chunks: []chunkstore.Digest{chunkstore.Sum([]byte("x"))}}
		md, err := s.PutManifest(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		var mds []chunkstore.Digest
		if err := s.WalkManifests(ctx, func(d chunkstore.Digest) error { mds = append(mds, d); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(mds) != 1 || mds[0] != md {
			t.Fatalf("WalkManifests = %v; want [%s]", mds, md)
		}
	})
	t.Run("Corruption", func(t *testing.T) {
		if b.Corrupt == nil {
			t.Skip("backend cannot be corrupted from outside")
		}
		s := b.New(t)
		for i, data := range [][]byte{Data(6, 100000), bytes.Repeat([]byte{7, 8, 9}, 100000)} {
			c := chunkstore.NewChunk(data)
			mustPut(t, s, c)
			b.Corrupt(t, s, c.Digest())
			_, err := s.GetChunk(ctx, c.Digest())
			var ce *chunkstore.CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("%d: GetChunk of a corrupted chunk = %v; want *CorruptError", i, err)
			}
			if ce.Digest != c.Digest() {
				t.Fatalf("%d: CorruptError names %s; want %s", i, ce.Digest, c.Digest())
			}
		}
	})
}

func mustPut(t *testing.T, s chunkstore.Store, c *chunkstore.Chunk) {
	t.Helper()
	if _, err := s.PutChunk(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}
