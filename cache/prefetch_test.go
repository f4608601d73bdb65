package cache

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/local"
)

// gatedOrigin is a far origin under the test's control (fault injection): every chunk request
// waits until the test releases that chunk. It records the order requests arrive in and how
// many were in flight at most.
type gatedOrigin struct {
	*local.Store
	mu       sync.Mutex
	arrived  sync.Cond
	order    []chunkstore.Digest
	gates    map[chunkstore.Digest]chan struct{}
	released map[chunkstore.Digest]bool
	open     bool // release every request from now on
	inFlight int
	maxIn    int
}

func newGatedOrigin(s *local.Store) *gatedOrigin {
	g := &gatedOrigin{Store: s, gates: make(map[chunkstore.Digest]chan struct{}), released: make(map[chunkstore.Digest]bool)}
	g.arrived.L = &g.mu
	return g
}

func (g *gatedOrigin) gateLocked(d chunkstore.Digest) chan struct{} {
	if g.gates[d] == nil {
		g.gates[d] = make(chan struct{})
	}
	return g.gates[d]
}

func (g *gatedOrigin) releaseLocked(d chunkstore.Digest) {
	if !g.released[d] {
		g.released[d] = true
		close(g.gateLocked(d))
	}
}

func (g *gatedOrigin) GetChunk(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	g.mu.Lock()
	g.order = append(g.order, d)
	g.inFlight++
	g.maxIn = max(g.maxIn, g.inFlight)
	if g.open {
		g.releaseLocked(d)
	}
	gate := g.gateLocked(d)
	g.arrived.Broadcast()
	g.mu.Unlock()
	<-gate
	g.mu.Lock()
	g.inFlight--
	g.mu.Unlock()
	return g.Store.GetChunk(ctx, d)
}

// release lets the request for chunk d (waiting or to come) through.
func (g *gatedOrigin) release(d chunkstore.Digest) {
	g.mu.Lock()
	g.releaseLocked(d)
	g.mu.Unlock()
}

// openAll releases every request, waiting and to come.
func (g *gatedOrigin) openAll() {
	g.mu.Lock()
	g.open = true
	for d := range g.gates {
		g.releaseLocked(d)
	}
	g.mu.Unlock()
}

// waitArrived waits until n requests have arrived (or for at most within) and returns the
// arrival order so far.
func (g *gatedOrigin) waitArrived(n int, within time.Duration) []chunkstore.Digest {
	t := time.AfterFunc(within, func() { g.mu.Lock(); g.arrived.Broadcast(); g.mu.Unlock() })
	defer t.Stop()
	deadline := time.Now().Add(within)
	g.mu.Lock()
	defer g.mu.Unlock()
	for len(g.order) < n && time.Now().Before(deadline) {
		g.arrived.Wait()
	}
	return slices.Clone(g.order)
}

// TestProfilePrefetchYieldsToGuest: the boot profile is fetched in its order, at most
// profileParallel chunks at a time; a guest read of a chunk the prefetch is not fetching goes
// to the origin at once, and while it waits no prefetch request is started; a guest waiting
// on the prefetch's own fetch does not stop the prefetch.
func TestProfilePrefetchYieldsToGuest(t *testing.T) {
	const cs, n = chunkstore.MinChunkSize, 32
	c, g, d, m, data := gatedImage(t, n, 100)
	ctx := context.Background()
	profile := make([]int, n)
	for i := range profile {
		profile[i] = i
	}
	if err := writeProfile(c.Local().Root(), d, profile); err != nil {
		t.Fatal(err)
	}
	mgr, err := NewManager(c, ManagerConfig{CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	im, err := c.Image(ctx, d) // a cold image with a profile: the prefetch starts
	if err != nil {
		t.Fatal(err)
	}
	chunk := func(i int) chunkstore.Digest { return m.Chunks[i] }
	got := g.waitArrived(profileParallel, 10*time.Second)
	if len(got) != profileParallel {
		t.Fatalf("%d prefetch requests reached the origin; want %d", len(got), profileParallel)
	}
	for i := range profileParallel {
		if !slices.Contains(got, chunk(i)) {
			t.Fatalf("the first %d requests are not the profile's first chunks: chunk %d missing", profileParallel, i)
		}
	}
	read := func(i int) <-chan error {
		done := make(chan error, 1)
		go func() {
			buf := make([]byte, cs)
			_, err := im.ReadAt(ctx, buf, int64(i)*cs)
			if err == nil && !bytes.Equal(buf, data[i*cs:(i+1)*cs]) {
				t.Errorf("chunk %d: wrong bytes", i)
			}
			done <- err
		}()
		return done
	}
	// The guest reads chunk 3 (being prefetched: it joins that fetch) and chunk 20 (not: it
	// goes to the origin at once, beside the prefetch's requests).
	r3 := read(3)
	r20 := read(20)
	if got = g.waitArrived(profileParallel+1, 10*time.Second); len(got) != profileParallel+1 || got[profileParallel] != chunk(20) {
		t.Fatalf("the guest's read of chunk 20 did not reach the origin beside the prefetch: %d requests", len(got))
	}
	// A prefetch slot frees; the guest still waits on chunk 20: no prefetch request starts.
	g.release(chunk(0))
	if got = g.waitArrived(profileParallel+2, 300*time.Millisecond); len(got) != profileParallel+1 {
		t.Fatalf("a prefetch request started while the guest waited on chunk 20 (%d requests)", len(got))
	}
	g.release(chunk(20))
	if err := <-r20; err != nil {
		t.Fatal(err)
	}
	// Now the guest waits only on chunk 3, the prefetch's own fetch: the prefetch goes on.
	if got = g.waitArrived(profileParallel+2, 10*time.Second); len(got) != profileParallel+2 || got[profileParallel+1] != chunk(profileParallel) {
		t.Fatalf("the prefetch did not go on while the guest waited on its own fetch: %d requests", len(got))
	}
	g.release(chunk(1))
	if got = g.waitArrived(profileParallel+3, 10*time.Second); len(got) != profileParallel+3 {
		t.Fatalf("the prefetch stopped while the guest waited on chunk 3, its own fetch: %d requests", len(got))
	}
	g.openAll()
	if err := <-r3; err != nil {
		t.Fatal(err)
	}
	mgr.pf.running.Wait()
	c.Flush()
	if g.maxIn > profileParallel+1 {
		t.Errorf("%d requests in flight at most; want at most %d (the prefetch's) and the guest's", g.maxIn, profileParallel)
	}
	for i := range n {
		if !c.haveLocal(ctx, chunk(i)) {
			t.Errorf("chunk %d not local after the prefetch", i)
		}
	}
	if st := mgr.Stats(); st.ProfileChunks != n-1 {
		t.Errorf("%d profile chunks prefetched; want %d (all but the one the guest fetched)", st.ProfileChunks, n-1)
	}
	if got := g.waitArrived(0, 0); len(got) != n {
		t.Errorf("%d chunk requests for %d chunks; want one each", len(got), n)
	}
}
