package peer

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/tier"
)

var secret = []byte("fleet secret for the peer tests")

// countingTier is the shared tier: a real directory store that counts what it served.
type countingTier struct {
	*local.Store
	gets, manifestGets atomic.Int64
}

func (c *countingTier) GetManifest(ctx context.Context, d chunkstore.Digest) (*chunkstore.Manifest, error) {
	c.manifestGets.Add(1)
	return c.Store.GetManifest(ctx, d)
}

func (c *countingTier) GetChunk(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	c.gets.Add(1)
	return c.Store.GetChunk(ctx, d)
}

// host is one fleet member as the daemon wires it: a local state, the tier order
// [peers, shared tier], one fetch per chunk, and the peer server serving from the same path.
type host struct {
	node   *Node
	tiers  *tier.Tiered
	mu     sync.Mutex
	have   map[chunkstore.Digest]*chunkstore.Chunk
	flight singleflight.Group
	serve  Source // replaces the honest source when set (a lying or stalling host)
	// manifests: as chunks, kept once read; serveManifest replaces the honest source.
	manifests     map[chunkstore.Digest]*chunkstore.Manifest
	serveManifest ManifestSource
}

// readManifest returns manifest d from the host's copy or, once, from its tier order.
func (h *host) readManifest(ctx context.Context, d chunkstore.Digest) (*chunkstore.Manifest, error) {
	v, err, _ := h.flight.Do("manifest "+d.String(), func() (any, error) {
		h.mu.Lock()
		m := h.manifests[d]
		h.mu.Unlock()
		if m != nil {
			return m, nil
		}
		m, err := h.tiers.GetManifest(context.WithoutCancel(ctx), d)
		if err != nil {
			return nil, err
		}
		h.mu.Lock()
		h.manifests[d] = m
		h.mu.Unlock()
		return m, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*chunkstore.Manifest), nil
}

func (h *host) read(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	h.mu.Lock()
	ch := h.have[d]
	h.mu.Unlock()
	if ch != nil {
		return ch, nil
	}
	v, err, _ := h.flight.Do(d.String(), func() (any, error) {
		h.mu.Lock()
		ch := h.have[d] // a flight that ended since the look above
		h.mu.Unlock()
		if ch != nil {
			return ch, nil
		}
		ch, err := h.tiers.GetChunk(context.WithoutCancel(ctx), d)
		if err != nil {
			return nil, err
		}
		h.mu.Lock()
		h.have[d] = ch
		h.mu.Unlock()
		return ch, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*chunkstore.Chunk), nil
}

// fleet starts n hosts on loopback over one shared tier holding chunks, and waits until each
// sees all n members.
func fleet(t *testing.T, n int, timeout time.Duration, chunks int) ([]*host, *countingTier, []chunkstore.Digest) {
	t.Helper()
	return fleetOf(t, n, Config{Addr: "127.0.0.1:0", Secret: secret, Timeout: timeout, Owners: 2, MaxManifest: DefaultMaxManifest}, chunks)
}

// fleetOf is fleet with every host configured as cfg (its name and join set per host).
func fleetOf(t *testing.T, n int, cfg Config, chunks int) ([]*host, *countingTier, []chunkstore.Digest) {
	t.Helper()
	st, err := local.Open(t.TempDir(), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	shared := &countingTier{Store: st}
	var ds []chunkstore.Digest
	for i := range chunks {
		ch := chunkstore.NewChunk(bytes.Repeat([]byte(fmt.Sprintf("chunk %d ", i)), 8192))
		if _, err := st.PutChunk(context.Background(), ch); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, ch.Digest())
	}
	var hosts []*host
	var join []string
	for i := range n {
		c := cfg
		c.Name, c.Join = fmt.Sprintf("host%d", i), join
		node, err := Start(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { node.Close() })
		if i == 0 {
			join = []string{node.GossipAddr()}
		}
		h := &host{node: node, have: map[chunkstore.Digest]*chunkstore.Chunk{}, manifests: map[chunkstore.Digest]*chunkstore.Manifest{}}
		h.tiers = tier.New([]chunkstore.Getter{node, shared}, nil)
		node.SetSources(Sources{
			Chunk: func(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
				if h.serve != nil {
					return h.serve(ctx, d)
				}
				return h.read(ctx, d)
			},
			Manifest: func(ctx context.Context, d chunkstore.Digest) (*chunkstore.Manifest, error) {
				if h.serveManifest != nil {
					return h.serveManifest(ctx, d)
				}
				return h.readManifest(ctx, d)
			},
		})
		hosts = append(hosts, h)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, h := range hosts {
		for h.node.Members() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s sees %d members, want %d", h.node, h.node.Members(), n)
			}
			time.Sleep(50 * time.Millisecond) // memberlist has no "joined" signal to wait on
		}
	}
	return hosts, shared, ds
}

// readAll has every host read every chunk at once and checks the bytes.
func readAll(t *testing.T, hosts []*host, ds []chunkstore.Digest) {
	t.Helper()
	var g errgroup.Group
	for _, h := range hosts {
		for _, d := range ds {
			g.Go(func() error {
				ch, err := h.read(context.Background(), d)
				if err != nil {
					return err
				}
				if ch.Digest() != d || chunkstore.Sum(ch.Data()) != d {
					return fmt.Errorf("%s: chunk %s: wrong bytes", h.node, d.Short())
				}
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatal("a read failed:", err)
	}
}

// Every host reads every chunk at once: the tier serves each chunk once, the rest moves
// between peers.
func TestOwnerFetchesOnce(t *testing.T) {
	hosts, shared, ds := fleet(t, 3, 5*time.Second, 48)
	readAll(t, hosts, ds)
	if got := shared.gets.Load(); got != int64(len(ds)) {
		t.Errorf("the tier served %d chunks for %d unique ones, want each once", got, len(ds))
	}
	var fromPeers int64
	for _, h := range hosts {
		fromPeers += h.tiers.Snapshots()[0].Fetches
	}
	if want := int64(2 * len(ds)); fromPeers != want {
		t.Errorf("peers served %d chunks, want %d (each chunk to the two non-owners)", fromPeers, want)
	}
}

// A peer that sends bytes that are not the chunk is refused (counted corrupt) and the chunk
// comes from the next origin; the reader sees good bytes.
func TestForgedChunkRefused(t *testing.T) {
	hosts, shared, ds := fleet(t, 2, 5*time.Second, 16)
	liar := hosts[0]
	liar.serve = func(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
		return chunkstore.UnverifiedChunk(d, []byte("forged bytes, not the chunk")), nil
	}
	readAll(t, hosts[1:], ds)
	snap := hosts[1].tiers.Snapshots()
	refused := hosts[1].node.Stats().Corrupt.Load()
	owned := int64(0)
	for _, d := range ds {
		if rank(hosts[1].node.members(), d, 1)[0].name == liar.node.self.name {
			owned++
		}
	}
	if owned == 0 {
		t.Fatal("the liar owns none of the chunks: the test proves nothing")
	}
	// Two hosts: the reader asks the liar, refuses its chunk, meets itself next and takes the
	// chunk from the tier.
	if refused != owned || snap[0].Fetches != 0 {
		t.Errorf("%d chunks refused, %d served by peers; want %d refused (every chunk the liar owns), 0 served", refused, snap[0].Fetches, owned)
	}
	if got := shared.gets.Load(); got != int64(len(ds)) {
		t.Errorf("the tier served %d chunks, want %d", got, len(ds))
	}
}

// A peer that stalls costs its readers the timeout, then the tier; a dead one costs less.
func TestStalledAndDeadPeers(t *testing.T) {
	const timeout = 300 * time.Millisecond
	hosts, _, ds := fleet(t, 3, timeout, 24)
	stall := make(chan struct{})
	defer close(stall)
	hosts[0].serve = func(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
		<-stall
		return nil, fmt.Errorf("stalled")
	}
	// host 2 dies without leaving: its listener and memberlist just stop.
	hosts[2].node.leaveOnce.Do(func() {}) // no goodbye
	hosts[2].node.list.Shutdown()
	hosts[2].node.srv.Close()
	start := time.Now()
	readAll(t, hosts[1:2], ds)
	// Each chunk costs at most Owners timeouts; they are read in parallel.
	if el := time.Since(start); el > 2*timeout+2*time.Second {
		t.Errorf("reads took %s with a stalled and a dead peer; want about 2×%s", el, timeout)
	}
	snap := hosts[1].tiers.Snapshots()
	if snap[0].Errors == 0 || snap[1].Fetches != int64(len(ds)) {
		t.Errorf("peer origin errors %d, tier fetches %d: want errors > 0 and the tier serving all %d", snap[0].Errors, snap[1].Fetches, len(ds))
	}
}

// Only members read a peer port: no header, a wrong secret, an old request are refused.
func TestPeerPortAuthenticated(t *testing.T) {
	hosts, _, ds := fleet(t, 1, time.Second, 1)
	u := "http://" + hosts[0].node.Addr() + chunkPath(ds[0])
	get := func(key []byte, at time.Time) int {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if key != nil {
			sign(key, req, at)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	good := deriveKey(secret, "peer http")
	for _, c := range []struct {
		name string
		key  []byte
		at   time.Time
		want int
	}{
		{"no header", nil, time.Now(), 401},
		{"another fleet's secret", deriveKey([]byte("another fleet's secret 12345"), "peer http"), time.Now(), 401},
		{"the gossip key", deriveKey(secret, "peer gossip"), time.Now(), 401},
		{"replayed later", good, time.Now().Add(-2 * MaxSkew), 401},
		{"a member", good, time.Now(), 200},
	} {
		if got := get(c.key, c.at); got != c.want {
			t.Errorf("%s: HTTP %d, want %d", c.name, got, c.want)
		}
	}
	if hosts[0].node.Stats().Refused.Load() != 4 {
		t.Errorf("refused %d, want 4", hosts[0].node.Stats().Refused.Load())
	}
	// A host with another secret cannot join the gossip either.
	other, err := Start(Config{Addr: "127.0.0.1:0", Join: []string{hosts[0].node.GossipAddr()}, Secret: []byte("another fleet's secret 12345"), Timeout: time.Second, Owners: 1, MaxManifest: DefaultMaxManifest})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	time.Sleep(500 * time.Millisecond)
	if hosts[0].node.Members() != 1 || other.Members() != 1 {
		t.Errorf("members %d and %d after a join with the wrong secret, want 1 and 1", hosts[0].node.Members(), other.Members())
	}
}

// Rendezvous ranking: removing a member moves only its chunks; owners spread evenly.
func TestRendezvous(t *testing.T) {
	var ms []member
	for i := range 8 {
		ms = append(ms, newMember(fmt.Sprintf("10.0.0.%d:7947", i), ""))
	}
	count := map[string]int{}
	moved := 0
	const n = 8000
	for i := range n {
		d := chunkstore.Sum([]byte(fmt.Sprint(i)))
		o := rank(ms, d, 1)[0]
		count[o.name]++
		o2 := rank(ms[1:], d, 1)[0]
		if o.name != ms[0].name && o2.name != o.name {
			moved++
		}
	}
	if moved != 0 {
		t.Errorf("%d chunks changed owner though their owner stayed", moved)
	}
	for name, c := range count {
		if c < n/8*8/10 || c > n/8*12/10 {
			t.Errorf("%s owns %d of %d chunks; want within 20%% of %d", name, c, n, n/8)
		}
	}
}

// With one host the peer tier answers at once: the cost of asking it per chunk fetched.
func BenchmarkGetChunkAlone(b *testing.B) {
	node, err := Start(Config{Addr: "127.0.0.1:0", Secret: secret, Timeout: time.Second, Owners: 2, MaxManifest: DefaultMaxManifest})
	if err != nil {
		b.Fatal(err)
	}
	defer node.Close()
	d := chunkstore.Sum([]byte("x"))
	ctx := context.Background()
	for b.Loop() {
		if _, err := node.GetChunk(ctx, d); !chunkstore.IsNotFound(err) {
			b.Fatal(err)
		}
	}
}
