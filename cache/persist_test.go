package cache

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/storetest"
)

// gatedBatch wraps a real local.Batch (fault injection): its Commit tells the test which
// chunks it holds and waits for the test to let it go on, commit for real, or fail.
type gatedBatch struct {
	chunkBatch
	g   *batchGate
	mu  sync.Mutex
	put []chunkstore.Digest
}

// batchGate is the test's end of every gatedBatch of one cache.
type batchGate struct {
	entered chan []chunkstore.Digest // a Commit began, holding these chunks
	release chan error               // nil: commit for real; else abort and fail with it
	stop    chan struct{}            // closed when the test ends: commits go on unasked
}

func newBatchGate() *batchGate {
	return &batchGate{entered: make(chan []chunkstore.Digest), release: make(chan error), stop: make(chan struct{})}
}

func (g *batchGate) open(s *local.Store) (chunkBatch, error) {
	b, err := newLocalBatch(s)
	if err != nil {
		return nil, err
	}
	return &gatedBatch{chunkBatch: b, g: g}, nil
}

func (b *gatedBatch) PutChunk(ctx context.Context, c *chunkstore.Chunk) (bool, int64, error) {
	b.mu.Lock()
	b.put = append(b.put, c.Digest())
	b.mu.Unlock()
	return b.chunkBatch.PutChunk(ctx, c)
}

func (b *gatedBatch) Commit(ctx context.Context) ([]chunkstore.Digest, error) {
	b.mu.Lock()
	put := slices.Clone(b.put)
	b.mu.Unlock()
	var err error
	select {
	case b.g.entered <- put:
		select {
		case err = <-b.g.release:
		case <-b.g.stop:
		}
	case <-b.g.stop:
	}
	if err != nil {
		b.chunkBatch.Abort()
		return nil, err
	}
	return b.chunkBatch.Commit(ctx)
}

// persistFixture is a cache over a fresh local state whose origin holds n chunks.
type persistFixture struct {
	c      *Cache
	state  *local.Store
	chunks []*chunkstore.Chunk
}

func newPersistFixture(t *testing.T, n int, pc persistConfig, g *batchGate) *persistFixture {
	t.Helper()
	dir := t.TempDir()
	origin, err := local.Open(filepath.Join(dir, "origin"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	state, err := local.Open(filepath.Join(dir, "state"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &persistFixture{state: state}
	for i := range n {
		ch := chunkstore.NewChunk(storetest.Data(uint64(500+i), chunkstore.MinChunkSize))
		if _, err := origin.PutChunk(context.Background(), ch); err != nil {
			t.Fatal(err)
		}
		f.chunks = append(f.chunks, ch)
	}
	// MemoryBytes 1: nothing stays in the memory cache, so a chunk is served from pending,
	// from the local state, or fetched again.
	f.c, err = newCache(Config{Local: state, Origins: []chunkstore.Getter{origin}, MemoryBytes: 1}, pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The gate opens for good first, so a failed test's Close does not wait forever.
		close(g.stop)
		f.c.Close()
	})
	return f
}

// read reads chunk i through the cache and checks its bytes.
func (f *persistFixture) read(t *testing.T, i int) {
	t.Helper()
	ch, err := f.c.Chunk(context.Background(), f.chunks[i].Digest())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ch.Data(), f.chunks[i].Data()) {
		t.Fatalf("chunk %d: wrong bytes", i)
	}
}

func (f *persistFixture) onDisk(t *testing.T, i int) bool {
	t.Helper()
	ok, err := f.state.HasChunk(context.Background(), f.chunks[i].Digest())
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestPersistPendingUntilDurable: fetched chunks are written in batches and leave pending —
// so stop being served from memory — only once their batch's Commit has returned; until then
// they are served from pending, never fetched twice, and the chunks queued behind a commit
// go into one batch, with one barrier pair for all of them.
func TestPersistPendingUntilDurable(t *testing.T) {
	const n = 12
	g := newBatchGate()
	pc := defaultPersist
	pc.workers, pc.newBatch = 1, g.open
	f := newPersistFixture(t, n, pc, g)
	syncs := f.state.Syncs()

	f.read(t, 0)
	first := <-g.entered // the worker commits chunk 0 alone and waits
	for i := 1; i < n; i++ {
		f.read(t, i) // queued behind that commit
	}
	check := func(batch []chunkstore.Digest) {
		t.Helper()
		for _, d := range batch {
			if !f.c.isPending(d) {
				t.Fatalf("chunk %s left pending before its batch was committed", d.Short())
			}
		}
		for i := range n {
			f.read(t, i) // from pending: no second fetch
		}
		if got := f.c.Stats().Fetches(); got != n {
			t.Fatalf("%d fetches for %d chunks while they were being written; want one each", got, n)
		}
	}
	if len(first) != 1 || first[0] != f.chunks[0].Digest() {
		t.Fatalf("first batch holds %d chunks; want chunk 0 alone", len(first))
	}
	check(first)
	if f.onDisk(t, 0) {
		t.Fatal("chunk 0 is visible in the local state before its batch was committed")
	}
	g.release <- nil
	second := <-g.entered
	if len(second) != n-1 {
		t.Fatalf("second batch holds %d chunks; want the %d queued behind the first commit", len(second), n-1)
	}
	// The worker took chunk 0 out of pending when its commit returned, before this batch.
	if f.c.isPending(first[0]) || !f.onDisk(t, 0) {
		t.Fatal("chunk 0 is still pending, or not in the local state, after its batch committed")
	}
	check(second)
	g.release <- nil
	f.c.Flush()
	for i := range n {
		if !f.onDisk(t, i) {
			t.Errorf("chunk %d not in the local state after Flush", i)
		}
		if f.c.isPending(f.chunks[i].Digest()) {
			t.Errorf("chunk %d still pending after Flush", i)
		}
	}
	if got := f.state.Syncs() - syncs; got != 4 {
		t.Errorf("%d barriers for %d chunks in two batches; want 4 (two per batch)", got, n)
	}
	if st := f.c.Stats(); st.StoreErrors != 0 || f.c.inline.Load() != 0 {
		t.Errorf("store errors %d, inline writes %d; want none", st.StoreErrors, f.c.inline.Load())
	}
}

// TestPersistFailedBatch: when a batch fails to commit, each of its chunks is counted as a
// store error, leaves pending, and is absent from the local state (nothing partial is left
// in it); the next read fetches it again and stores it.
func TestPersistFailedBatch(t *testing.T) {
	const n = 6
	g := newBatchGate()
	pc := defaultPersist
	pc.workers, pc.newBatch = 1, g.open
	f := newPersistFixture(t, n, pc, g)

	f.read(t, 0)
	<-g.entered
	for i := 1; i < n; i++ {
		f.read(t, i)
	}
	injected := errors.New("injected commit failure")
	g.release <- injected // chunk 0's batch
	<-g.entered
	g.release <- injected // the other five
	f.c.Flush()
	if st := f.c.Stats(); st.StoreErrors != n {
		t.Errorf("%d store errors; want %d, one per chunk of the failed batches", st.StoreErrors, n)
	}
	for i := range n {
		if f.onDisk(t, i) {
			t.Errorf("chunk %d is in the local state though its batch failed", i)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(f.state.Root(), "tmp")); len(ents) != 0 {
		t.Errorf("%d temp files left by the failed batches", len(ents))
	}
	// Fetched again, and this time stored.
	f.read(t, 2)
	if got := f.c.Stats().Fetches(); got != n+1 {
		t.Errorf("%d fetches; want %d (chunk 2 fetched again)", got, n+1)
	}
	<-g.entered
	g.release <- nil
	f.c.Flush()
	if !f.onDisk(t, 2) {
		t.Error("chunk 2 not stored after it was fetched again")
	}
}

// TestPersistQueueFull: when the workers are behind and the queue is full, the fetching
// reader writes its chunk itself, durably, before it returns; Close waits for the rest.
func TestPersistQueueFull(t *testing.T) {
	g := newBatchGate()
	pc := defaultPersist
	pc.workers, pc.queue, pc.newBatch = 1, 2, g.open
	f := newPersistFixture(t, 5, pc, g)

	f.read(t, 0)
	<-g.entered // the worker is busy with chunk 0
	f.read(t, 1)
	f.read(t, 2) // the queue is full
	f.read(t, 3) // written by this reader
	if !f.onDisk(t, 3) || f.c.isPending(f.chunks[3].Digest()) {
		t.Fatal("a chunk its reader wrote itself is not durable when the read returns")
	}
	if got := f.c.inline.Load(); got != 1 {
		t.Fatalf("%d inline writes; want 1", got)
	}
	go func() {
		g.release <- nil // chunk 0
		<-g.entered      // chunks 1 and 2
		g.release <- nil
	}()
	f.c.Close()
	for i := range 4 {
		if !f.onDisk(t, i) {
			t.Errorf("chunk %d not in the local state after Close", i)
		}
	}
}
