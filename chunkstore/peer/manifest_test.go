package peer

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/httpx"
)

// manifests puts k manifests of chunks 1 MiB chunks each (seeded by seed) in the shared tier.
func manifests(t *testing.T, shared *countingTier, k, chunks, seed int) []chunkstore.Digest {
	t.Helper()
	var ds []chunkstore.Digest
	for i := range k {
		m := &chunkstore.Manifest{Size: int64(chunks) << 20, ChunkSize: 1 << 20}
		for c := range chunks {
			m.Chunks = append(m.Chunks, chunkstore.Sum([]byte(fmt.Sprint(seed, i, c))))
		}
		d, err := shared.PutManifest(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	return ds
}

// ownedBy counts the digests whose first owner, as h ranks them, is owner.
func ownedBy(h, owner *host, ds []chunkstore.Digest) (n int) {
	for _, d := range ds {
		if rank(h.node.members(), d, 1)[0].name == owner.node.self.name {
			n++
		}
	}
	return n
}

// Every host reads every manifest at once: the tier serves each once (to its owner), the
// others get theirs from the owner, and every one is the manifest its digest names.
func TestManifestOwnerServes(t *testing.T) {
	hosts, shared, _ := fleet(t, 3, 5*time.Second, 0)
	ds := manifests(t, shared, 24, 4, 1)
	var g errgroup.Group
	for _, h := range hosts {
		for _, d := range ds {
			g.Go(func() error {
				m, err := h.readManifest(context.Background(), d)
				if err != nil {
					return err
				}
				if got, _, _ := m.Digest(); got != d {
					return fmt.Errorf("%s: manifest %s: got %s", h.node, d.Short(), got.Short())
				}
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatal("a read failed:", err)
	}
	if got := shared.manifestGets.Load(); got != int64(len(ds)) {
		t.Errorf("the tier served %d manifests for %d images, want each once", got, len(ds))
	}
	var fromPeers, served int64
	for _, h := range hosts {
		fromPeers += h.node.Stats().Manifests.Load()
		served += h.node.Stats().ServedManifests.Load()
	}
	if want := int64(2 * len(ds)); fromPeers != want || served != want {
		t.Errorf("peers gave %d manifests and served %d, want %d (each to the two non-owners)", fromPeers, served, want)
	}
}

// A peer that sends a manifest that is not the one asked for (a well-formed one, of another
// image) is refused (counted corrupt) and the manifest comes from the tier.
func TestForgedManifestRefused(t *testing.T) {
	hosts, shared, _ := fleet(t, 2, 5*time.Second, 0)
	ds := manifests(t, shared, 16, 4, 2)
	other := manifests(t, shared, 1, 8, 3)[0]
	forged, err := shared.Store.GetManifest(context.Background(), other)
	if err != nil {
		t.Fatal(err)
	}
	liar, reader := hosts[0], hosts[1]
	liar.serveManifest = func(context.Context, chunkstore.Digest) (*chunkstore.Manifest, error) { return forged, nil }
	owned := ownedBy(reader, liar, ds)
	if owned == 0 {
		t.Fatal("the liar owns none of the manifests: the test proves nothing")
	}
	shared.manifestGets.Store(0)
	for _, d := range ds {
		m, err := reader.readManifest(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		if got, _, _ := m.Digest(); got != d {
			t.Fatalf("manifest %s: the reader took %s", d.Short(), got.Short())
		}
	}
	st := reader.node.Stats()
	if st.Corrupt.Load() != int64(owned) || st.Manifests.Load() != 0 {
		t.Errorf("%d manifests refused, %d taken from peers; want %d refused (every one the liar owns), 0 taken", st.Corrupt.Load(), st.Manifests.Load(), owned)
	}
	if got := shared.manifestGets.Load(); got != int64(len(ds)) {
		t.Errorf("the tier served %d manifests, want %d", got, len(ds))
	}
}

// A manifest larger than the asker's bound is refused before it is read (its declared length
// is over the bound), and the tier is asked instead.
func TestManifestSizeBounded(t *testing.T) {
	const bound = 2048
	hosts, shared, _ := fleetOf(t, 2, Config{Addr: "127.0.0.1:0", Secret: secret, Timeout: 5 * time.Second, Owners: 2, MaxManifest: bound}, 0)
	server, reader := hosts[0], hosts[1]
	var big chunkstore.Digest
	for seed := 4; ; seed++ { // 64 chunks: about 4.3 KB encoded, over the bound
		big = manifests(t, shared, 1, 64, seed)[0]
		if ownedBy(reader, server, []chunkstore.Digest{big}) == 1 {
			break
		}
	}
	if _, err := server.readManifest(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	_, err := reader.node.GetManifest(context.Background(), big)
	var tl *httpx.TooLargeError
	if !errors.As(err, &tl) || tl.Size <= bound {
		t.Fatalf("asking the owner for a %d-chunk manifest: %v; want it refused as larger than %d bytes, unread", 64, err, bound)
	}
	if got := reader.node.Stats().AskFailed.Load(); got != 1 {
		t.Errorf("%d failed requests, want 1", got)
	}
	m, err := reader.readManifest(context.Background(), big)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := m.Digest(); got != big {
		t.Fatalf("the reader took %s for %s", got.Short(), big.Short())
	}
}
