package cache

import (
	"bytes"
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/storetest"
)

// gatedImage puts an image of n chunks of fresh data in an origin behind a gate and returns
// the cache over an empty state, the image's manifest and its data.
func gatedImage(t *testing.T, n int, seed uint64) (*Cache, *gatedOrigin, chunkstore.Digest, *chunkstore.Manifest, []byte) {
	t.Helper()
	const cs = chunkstore.MinChunkSize
	dir := t.TempDir()
	originStore, err := local.Open(filepath.Join(dir, "origin"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m := &chunkstore.Manifest{Size: int64(n) * cs, ChunkSize: cs}
	var data []byte
	for i := range n {
		b := storetest.Data(seed+uint64(i), cs)
		data = append(data, b...)
		ch := chunkstore.NewChunk(b)
		if _, err := originStore.PutChunk(ctx, ch); err != nil {
			t.Fatal(err)
		}
		m.Chunks = append(m.Chunks, ch.Digest())
	}
	d, err := originStore.PutManifest(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	state, err := local.Open(filepath.Join(dir, "state"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	g := newGatedOrigin(originStore)
	c, err := New(Config{Local: state, Origins: []chunkstore.Getter{g}, MemoryBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	t.Cleanup(g.openAll)
	return c, g, d, m, data
}

// TestPrecacheInUseJoinsYields: nova's utime of an image in use starts nothing; of an unused
// image it starts one fill, which a second utime and a prefetch join; the fill fetches one
// chunk at a time and starts none while a guest read waits on the origin; it ends with every
// chunk local, each fetched once. Removing an image stops its fill.
func TestPrecacheInUseJoinsYields(t *testing.T) {
	const n = 16
	c, g, d, m, data := gatedImage(t, n, 2540)
	var inUse atomic.Bool
	inUse.Store(true)
	mgr, err := NewManager(c, ManagerConfig{CacheSize: -1, PrefetchRate: 1 << 40,
		InUse: func(context.Context) (map[chunkstore.Digest][]string, error) {
			if inUse.Load() {
				return map[chunkstore.Digest][]string{d: {"instance-1"}}, nil
			}
			return nil, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	im, err := c.Image(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if started, err := mgr.Precache(ctx, d); started || err != nil || len(mgr.Fills()) != 0 {
		t.Fatalf("precache of an image in use: started %v, %v, fills %+v", started, err, mgr.Fills())
	}
	inUse.Store(false)
	if started, err := mgr.Precache(ctx, d); !started || err != nil {
		t.Fatalf("precache of an unused image: started %v, %v", started, err)
	}
	if started, _ := mgr.Precache(ctx, d); started {
		t.Fatal("a second utime started a second fill")
	}
	chunk := func(i int) chunkstore.Digest { return m.Chunks[i] }
	if got := g.waitArrived(1, 10*time.Second); len(got) != 1 || got[0] != chunk(0) {
		t.Fatalf("the fill's first request: %d requests", len(got))
	}
	fi, done, err := mgr.Prefetch(ctx, d)
	if err != nil || fi.Reason != FillPrecache || !fi.Running {
		t.Fatalf("prefetch while a precache runs: %+v, %v; want the precache", fi, err)
	}
	// The guest reads chunk 10: its request goes out beside the fill's.
	read := make(chan error, 1)
	go func() {
		buf := make([]byte, m.ChunkSize)
		_, err := im.ReadAt(ctx, buf, 10*m.ChunkSize)
		if err == nil && !bytes.Equal(buf, data[10*m.ChunkSize:11*m.ChunkSize]) {
			t.Error("chunk 10: wrong bytes")
		}
		read <- err
	}()
	if got := g.waitArrived(2, 10*time.Second); len(got) != 2 || got[1] != chunk(10) {
		t.Fatalf("the guest's read did not reach the origin beside the fill: %d requests", len(got))
	}
	g.release(chunk(0))
	if got := g.waitArrived(3, 300*time.Millisecond); len(got) != 2 {
		t.Fatalf("the fill started a request while a guest read waited (%d requests)", len(got))
	}
	g.release(chunk(10))
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	if got := g.waitArrived(3, 10*time.Second); len(got) != 3 || got[2] != chunk(1) {
		t.Fatalf("the fill did not go on after the guest's read: %d requests", len(got))
	}
	g.openAll()
	<-done
	fi, _, _ = mgr.Fill(d)
	if !fi.Complete || fi.Running || fi.ToFetch != n || fi.Chunks != n-1 {
		t.Fatalf("fill after the guest read one chunk: %+v; want complete, %d of %d fetched", fi, n-1, n)
	}
	if got := g.waitArrived(0, 0); len(got) != n {
		t.Errorf("%d requests for %d chunks; want one each", len(got), n)
	}
	st := mgr.Stats()
	if st.PrecacheAsked != 3 || st.PrecacheInUse != 1 || st.Prefetches != 1 || st.PrecacheStarted != 1 {
		t.Errorf("counters %+v", st)
	}

	// Removal stops a fill.
	c2, g2, d2, _, _ := gatedImage(t, n, 2560)
	mgr2, err := NewManager(c2, ManagerConfig{CacheSize: -1, PrefetchRate: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	_, done2, err := mgr2.Prefetch(ctx, d2)
	if err != nil {
		t.Fatal(err)
	}
	g2.waitArrived(1, 10*time.Second)
	if err := mgr2.Remove(ctx, d2, d2.String()); err != nil {
		t.Fatal(err)
	}
	g2.openAll()
	<-done2
	if got := g2.waitArrived(0, 0); len(got) != 1 {
		t.Errorf("the fill of a removed image made %d requests; want it stopped after the first", len(got))
	}
	if fi, _, ok := mgr2.Fill(d2); ok {
		t.Errorf("the removed image still has a fill: %+v", fi)
	}

	// nova's spawn: a utime to now of an unused image, then the overlay on it. The precache
	// waits PrecacheDelay, finds the image in use and fetches nothing.
	c3, g3, d3, _, _ := gatedImage(t, n, 2580)
	var spawned atomic.Bool
	mgr3, err := NewManager(c3, ManagerConfig{CacheSize: -1, PrefetchRate: 1 << 40, PrecacheDelay: 300 * time.Millisecond,
		InUse: func(context.Context) (map[chunkstore.Digest][]string, error) {
			if spawned.Load() {
				return map[chunkstore.Digest][]string{d3: {"instance-2"}}, nil
			}
			return nil, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c3.Image(ctx, d3); err != nil {
		t.Fatal(err)
	}
	if started, err := mgr3.Precache(ctx, d3); !started || err != nil {
		t.Fatalf("spawn's utime: started %v, %v", started, err)
	}
	spawned.Store(true)
	fi, done3, _ := mgr3.Fill(d3)
	if !fi.Waiting {
		t.Errorf("a precache before its delay: %+v; want it waiting", fi)
	}
	g3.openAll()
	<-done3
	if fi, _, _ = mgr3.Fill(d3); fi.Complete || fi.Chunks != 0 || fi.Stopped != "in use by instance-2 (a spawn's utime)" {
		t.Errorf("precache of an image a spawn took during its delay: %+v", fi)
	}
	if got := g3.waitArrived(0, 0); len(got) != 0 {
		t.Errorf("%d chunk requests for an image a spawn took; want none", len(got))
	}

	// nova's spawn opens the base (qemu-img) right after its utime: the precache stops at once,
	// even if the instance is gone by the end of the delay.
	c4, g4, d4, _, _ := gatedImage(t, n, 2600)
	mgr4, err := NewManager(c4, ManagerConfig{CacheSize: -1, PrefetchRate: 1 << 40, PrecacheDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	im4, err := c4.Image(ctx, d4)
	if err != nil {
		t.Fatal(err)
	}
	mgr4.Precache(ctx, d4)
	_, done4, _ := mgr4.Fill(d4)
	im4.Acquire()
	im4.Release()
	g4.openAll()
	<-done4
	if fi, _, _ := mgr4.Fill(d4); fi.Chunks != 0 || fi.Stopped != "opened during the delay (a spawn's utime)" {
		t.Errorf("precache of an image opened during its delay: %+v", fi)
	}
	if got := g4.waitArrived(0, 0); len(got) != 0 || mgr4.Stats().PrecacheInUse != 1 {
		t.Errorf("%d chunk requests, %d precaches counted in use; want none and one", len(got), mgr4.Stats().PrecacheInUse)
	}
}
