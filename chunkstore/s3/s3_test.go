package s3_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/s3"
	"github.com/basefs/basefs/chunkstore/s3/s3test"
	"github.com/basefs/basefs/chunkstore/storetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	s3test.Stop()
	os.Exit(code)
}

func newStore(t *testing.T) *s3.Store {
	t.Helper()
	cfg, _ := s3test.Config(t)
	s, err := s3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSuiteRGW runs the store suite against a real Ceph RGW.
func TestSuiteRGW(t *testing.T) {
	storetest.Run(t, storetest.Backend{
		New: func(t *testing.T) chunkstore.Store { return newStore(t) },
		Corrupt: func(t *testing.T, st chunkstore.Store, d chunkstore.Digest) {
			s := st.(*s3.Store)
			obj := s3test.Read(t, s, s.ChunkKey(d))
			obj[len(obj)-1] ^= 0x55
			s3test.Overwrite(t, s, s.ChunkKey(d), obj)
		},
	})
}

// TestWrongObjectNeverServed: an object replaced by another chunk's (valid) object, or by
// garbage, is a CorruptError naming the chunk and its s3:// location; a manifest stored under
// the wrong name is refused too.
func TestWrongObjectNeverServed(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := chunkstore.NewChunk(storetest.Data(1, 100000))
	b := chunkstore.NewChunk(storetest.Data(2, 100000))
	for _, c := range []*chunkstore.Chunk{a, b} {
		if _, err := s.PutChunk(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	s3test.Overwrite(t, s, s.ChunkKey(a.Digest()), chunkstore.AppendObject(nil, b.Data()))
	_, err := s.GetChunk(ctx, a.Digest())
	var ce *chunkstore.CorruptError
	if !errors.As(err, &ce) || ce.Digest != a.Digest() || ce.Got != b.Digest() || ce.Where != "s3://"+s.Bucket()+"/"+s.ChunkKey(a.Digest()) {
		t.Fatalf("GetChunk of a swapped object = %v; want CorruptError naming %s at its key, got %s", err, a.Digest().Short(), b.Digest().Short())
	}
	s3test.Overwrite(t, s, s.ChunkKey(b.Digest()), []byte("not an object"))
	if _, err := s.GetChunk(ctx, b.Digest()); !chunkstore.IsCorrupt(err) {
		t.Fatalf("GetChunk of garbage = %v; want CorruptError", err)
	}
	m := &chunkstore.Manifest{Size: 100000, ChunkSize: 1 << 20, Chunks: []chunkstore.Digest{a.Digest()}}
	md, enc, _ := m.Digest()
	other := chunkstore.Sum([]byte("other"))
	s3test.Overwrite(t, s, s.ManifestKey(other), enc)
	if _, err := s.GetManifest(ctx, other); !chunkstore.IsCorrupt(err) {
		t.Fatalf("GetManifest under the wrong name = %v; want CorruptError", err)
	}
	if _, err := s.PutManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetManifest(ctx, md); err != nil || got.Chunks[0] != a.Digest() {
		t.Fatalf("GetManifest = %v, %v", got, err)
	}
}

// TestPutIfAbsentNeverReplaces: a put of a chunk whose key holds other bytes reports not
// created and leaves them (the reader finds them wrong; the writer never clobbers).
func TestPutIfAbsentNeverReplaces(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	c := chunkstore.NewChunk(storetest.Data(3, 5000))
	s3test.Overwrite(t, s, s.ChunkKey(c.Digest()), []byte("junk"))
	created, err := s.PutChunk(ctx, c)
	if err != nil || created {
		t.Fatalf("PutChunk over an existing key = %v, %v; want false, nil", created, err)
	}
	if got := s3test.Read(t, s, s.ChunkKey(c.Digest())); string(got) != "junk" {
		t.Fatalf("the existing object was replaced")
	}
}

// TestProfileBytes round-trips a boot profile object.
func TestProfileBytes(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	d := chunkstore.Sum([]byte("image"))
	if _, err := s.GetProfileBytes(ctx, d); !chunkstore.IsNotFound(err) {
		t.Fatalf("GetProfileBytes(absent) = %v; want ErrNotFound", err)
	}
	if err := s.PutProfileBytes(ctx, d, []byte("basefs-profile 1\nchunks 0\n")); err != nil {
		t.Fatal(err)
	}
	if b, err := s.GetProfileBytes(ctx, d); err != nil || string(b) != "basefs-profile 1\nchunks 0\n" {
		t.Fatalf("GetProfileBytes = %q, %v", b, err)
	}
}

// TestGlanceIndexBytes round-trips a Glance index entry; a second put keeps the first.
func TestGlanceIndexBytes(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	const id = "5f1c0a8e-3b7d-4e2a-9c61-0d4b8f2e7a13"
	if _, err := s.GetGlanceIndexBytes(ctx, id); !chunkstore.IsNotFound(err) {
		t.Fatalf("GetGlanceIndexBytes(absent) = %v; want ErrNotFound", err)
	}
	if created, err := s.PutGlanceIndexBytes(ctx, id, []byte("first\n")); err != nil || !created {
		t.Fatalf("PutGlanceIndexBytes = %v, %v; want created", created, err)
	}
	if created, err := s.PutGlanceIndexBytes(ctx, id, []byte("second\n")); err != nil || created {
		t.Fatalf("second PutGlanceIndexBytes = %v, %v; want present, not replaced", created, err)
	}
	if b, err := s.GetGlanceIndexBytes(ctx, id); err != nil || string(b) != "first\n" {
		t.Fatalf("GetGlanceIndexBytes = %q, %v", b, err)
	}
}

// TestOutageCooldownAndBack: with radosgw stopped a call fails after its bounded attempts
// (transient, ErrUnavailable), later calls fail at once during the cooldown, and when radosgw
// is back the store is used again without being made anew.
func TestOutageCooldownAndBack(t *testing.T) {
	ctx := context.Background()
	cfg, _ := s3test.Config(t)
	cfg.Cooldown = 500 * time.Millisecond
	s, err := s3.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := chunkstore.NewChunk(storetest.Data(4, 70000))
	if _, err := s.PutChunk(ctx, c); err != nil {
		t.Fatal(err)
	}
	s3test.StopRGW(t)
	restarted := false
	defer func() {
		if !restarted {
			s3test.StartRGW(t)
		}
	}()
	start := time.Now()
	_, err = s.GetChunk(ctx, c.Digest())
	first := time.Since(start)
	if err == nil || !s3.IsTransient(err) || !errors.Is(err, s3.ErrUnavailable) {
		t.Fatalf("GetChunk with radosgw down = %v; want a transient ErrUnavailable", err)
	}
	start = time.Now()
	_, err = s.GetChunk(ctx, c.Digest())
	fast := time.Since(start)
	if !errors.Is(err, s3.ErrUnavailable) || fast > 20*time.Millisecond {
		t.Fatalf("GetChunk during the cooldown took %v: %v; want ErrUnavailable at once", fast, err)
	}
	t.Logf("radosgw down: first call failed after %v (bounded retries), the next at once (%v)", first, fast)
	s3test.StartRGW(t)
	restarted = true
	time.Sleep(cfg.Cooldown)
	var got *chunkstore.Chunk
	deadline := time.Now().Add(10 * time.Second)
	for got, err = s.GetChunk(ctx, c.Digest()); err != nil && time.Now().Before(deadline); got, err = s.GetChunk(ctx, c.Digest()) {
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || !bytes.Equal(got.Data(), c.Data()) {
		t.Fatalf("GetChunk after radosgw came back: %v", err)
	}
}

// TestRefusedIsPermanent: wrong credentials are a permanent error, not retried, no cooldown.
func TestRefusedIsPermanent(t *testing.T) {
	cfg, _ := s3test.Config(t)
	cfg.SecretKey = "wrong"
	s, err := s3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.GetChunk(context.Background(), chunkstore.Sum([]byte("x")))
	if err == nil || s3.IsTransient(err) || chunkstore.IsNotFound(err) {
		t.Fatalf("GetChunk with a wrong secret = %v; want a permanent error", err)
	}
}

// TestUnreachableEndpoint needs no RGW: a closed port fails transiently within the bound.
func TestUnreachableEndpoint(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s, err := s3.New(context.Background(), s3.Config{Bucket: "basefs", Endpoint: "http://" + addr, AccessKey: "a", SecretKey: "b"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := s.GetChunk(context.Background(), chunkstore.Sum([]byte("x"))); !s3.IsTransient(err) {
				t.Errorf("GetChunk from a closed port = %v; want transient", err)
			}
		})
	}
	wg.Wait()
}
