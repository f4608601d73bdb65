package glanceimg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/chunkstore/glance/glancetest"
	"github.com/basefs/basefs/chunkstore/importer"
	"github.com/basefs/basefs/chunkstore/inspect"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/storetest"
	"github.com/basefs/basefs/chunkstore/testenv"
)

func TestMain(m *testing.M) { glancetest.Main(m) }

// layerFixture is a Layer over an empty state whose Glance origin is this process's real
// Glance, reached through a switch that can make it answer 503 (an outage, in milliseconds).
type layerFixture struct {
	c      *cache.Cache
	l      *Layer
	origin *glance.Origin
	allow  atomic.Int64 // requests Glance still answers (glanceUp: all)
}

func newLayer(t *testing.T, limits importer.Limits) *layerFixture {
	t.Helper()
	ep := glancetest.Start(t)
	f := &layerFixture{}
	f.allow.Store(glanceUp)
	target, _ := url.Parse(ep)
	proxy := httputil.NewSingleHostReverseProxy(target)
	sw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.allow.Add(-1) < 0 {
			http.Error(w, "Glance is down", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(sw.Close)
	gc, err := glance.New(context.Background(), glance.Options{Endpoint: sw.URL, RequestTimeout: 10 * time.Second, Attempts: 2, Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.origin = glance.NewOrigin(gc)
	st, err := local.Open(filepath.Join(t.TempDir(), "state"), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	names := NewNames(st.Root())
	if f.c, err = cache.New(cache.Config{Local: st, Origins: []chunkstore.Getter{f.origin}, Names: names, OnManifest: f.origin.Register}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.c.Close)
	f.l = New(Config{Cache: f.c, Names: names, Origin: f.origin, Catalog: glance.NewCatalog(gc.ListIDs, 0), Limits: limits, Refusals: &inspect.Refusals{}})
	t.Cleanup(f.l.Close)
	return f
}

const glanceUp = 1 << 62

// upload puts dataBytes of random data then zeroBytes of zeros into Glance as a raw image.
func upload(t *testing.T, seed uint64, dataBytes, zeroBytes int) (string, []byte) {
	t.Helper()
	data := append(storetest.Data(seed, dataBytes), make([]byte, zeroBytes)...)
	p := filepath.Join(t.TempDir(), "image.raw")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return glancetest.Upload(t, t.Name(), "raw", "bare", p), data
}

func (f *layerFixture) glanceBytes() int64 { return f.c.OriginCounters(f.origin).Bytes.Load() }

func readAt(t *testing.T, im *cache.Image, off int64, n int) ([]byte, error) {
	t.Helper()
	b := make([]byte, n)
	_, err := im.ReadAt(context.Background(), b, off)
	return b, err
}

func waitComplete(t *testing.T, im *cache.Image, within time.Duration) (chunkstore.Digest, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return im.Complete(ctx)
}

// TestRawImageLazyThenNamed: nova's name of a raw Glance image resolves through the listing
// before any byte is fetched (the header is read to inspect it, not counted as served); a
// read fetches about what it reads; reading all of it completes the image — checked against
// os_hash_value — and nova's name then maps to its digest, which Ensure, Resolve, CacheKey
// and Aliases all give.
func TestRawImageLazyThenNamed(t *testing.T) {
	ctx := context.Background()
	const cs = chunkstore.DefaultChunkSize
	f := newLayer(t, importer.Limits{})
	id, data := upload(t, 1, 40*cs+100, 8*cs)
	name := glanceref.NovaName(id)
	if _, ok, err := f.l.Resolve(ctx, "not-a-nova-name"); ok || err != nil {
		t.Fatalf("a name that is no SHA-1: %v %v", ok, err)
	}
	if _, ok, err := f.l.Resolve(ctx, glanceref.NovaName("6f3c1a5e-0000-4000-8000-00000000dead")); ok || err != nil {
		t.Fatalf("a nova name Glance does not list: %v %v", ok, err)
	}
	key, ok, err := f.l.Resolve(ctx, name)
	if err != nil || !ok || key != ProvisionalKey(id) {
		t.Fatalf("resolve %s: %s %v %v; want the provisional key", name, key.Short(), ok, err)
	}
	if n := f.glanceBytes(); n != 0 {
		t.Fatalf("resolving fetched %d bytes", n)
	}
	im, err := f.l.Ensure(ctx, id)
	if err != nil || !im.Lazy() || im.Digest() != key || im.Size() != int64(len(data)) {
		t.Fatalf("ensure: %v lazy %v", err, im != nil && im.Lazy())
	}
	if k, ok := f.l.CacheKey(name); !ok || k != key {
		t.Fatalf("CacheKey while provisional: %s %v", k.Short(), ok)
	}
	b, err := readAt(t, im, 10*cs+5, 2*cs)
	if err != nil || !bytes.Equal(b, data[10*cs+5:12*cs+5]) {
		t.Fatalf("read: %v", err)
	}
	if n := f.glanceBytes(); n < 2*cs || n > 4*cs {
		t.Fatalf("a read of 2 chunks took %d bytes from Glance", n)
	}
	all, err := readAt(t, im, 0, len(data))
	if err != nil || sha256.Sum256(all) != sha256.Sum256(data) {
		t.Fatalf("whole read: %v", err)
	}
	d, err := waitComplete(t, im, 30*time.Second)
	if err != nil || d.IsZero() {
		t.Fatalf("completion: %s %v", d.Short(), err)
	}
	m, err := f.c.Local().GetManifest(ctx, d)
	if err != nil || m.Size != int64(len(data)) || m.Source.GlanceID != id || !m.Chunks[len(m.Chunks)-1].IsZero() {
		t.Fatalf("manifest of the completed image: %+v, %v", m, err)
	}
	if got, ok, err := f.l.Resolve(ctx, name); got != d || !ok || err != nil {
		t.Fatalf("resolve after completion: %s %v %v, want %s", got.Short(), ok, err, d.Short())
	}
	if k, ok := f.l.CacheKey(name); !ok || k != d {
		t.Fatalf("CacheKey after completion: %s", k.Short())
	}
	if im2, err := f.l.Ensure(ctx, id); err != nil || im2.Digest() != d || im2.Lazy() {
		t.Fatalf("ensure after completion: %v", err)
	}
	if al, err := f.l.Aliases(ctx); err != nil || al[name] != d {
		t.Fatalf("aliases %v, %v", al, err)
	}
}

// TestProvisionalHashMismatchMarksBad: data in Glance that does not match its os_hash_value
// reads (its first fetch is all there is to trust) until the whole image is seen; then the
// image is bad: reads fail, Ensure fails, the origin's corruption counter grows.
func TestProvisionalHashMismatchMarksBad(t *testing.T) {
	ctx := context.Background()
	const cs = chunkstore.DefaultChunkSize
	f := newLayer(t, importer.Limits{})
	id, data := upload(t, 2, 8*cs, 0)
	glancetest.Corrupt(t, id, 6*cs+1)
	im, err := f.l.Ensure(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	readAt(t, im, 0, len(data))
	if _, err := waitComplete(t, im, 30*time.Second); !errors.Is(err, glanceref.ErrBadImage) {
		t.Fatalf("completion of corrupt data: %v, want ErrBadImage", err)
	}
	if _, err := readAt(t, im, 0, 10); !errors.Is(err, glanceref.ErrBadImage) {
		t.Fatalf("read of a bad image: %v", err)
	}
	if _, err := f.l.Ensure(ctx, id); !errors.Is(err, glanceref.ErrBadImage) {
		t.Fatalf("ensure of a bad image: %v", err)
	}
	if n := f.c.OriginCounters(f.origin).Corrupt.Load(); n < 1 {
		t.Fatal("the mismatch was not counted")
	}
}

// TestProvisionalRetriesThenStops: a completion that cannot read Glance (an outage) never
// marks the image bad: it retries, shown in Stats, and completes once Glance answers; on
// another image the same wait ends at once when the layer is closed.
func TestProvisionalRetriesThenStops(t *testing.T) {
	const cs = chunkstore.DefaultChunkSize
	f := newLayer(t, importer.Limits{})
	id, data := upload(t, 3, 4*cs, 0)
	im := f.seenThenOutage(t, id, data)
	f.waitAttempts(t, id)
	if d, err := waitComplete(t, im, 50*time.Millisecond); !d.IsZero() || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("completion during the outage: %s %v; want still waiting, not bad", d.Short(), err)
	}
	f.allow.Store(glanceUp) // Glance is back
	if d, err := waitComplete(t, im, 10*time.Second); err != nil || d.IsZero() {
		t.Fatalf("completion after the outage: %s %v", d.Short(), err)
	}
	// A second image waits to retry; Close ends the wait at once and marks nothing bad.
	id2, data2 := upload(t, 4, 4*cs, 0)
	im2 := f.seenThenOutage(t, id2, data2)
	f.waitAttempts(t, id2)
	start := time.Now()
	f.l.Close()
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Close took %s with a completion waiting to retry", took)
	}
	if d, err := waitComplete(t, im2, time.Millisecond); !d.IsZero() || err != nil {
		t.Fatalf("after Close: %s %v; want stopped (done), not bad", d.Short(), err)
	}
}

// seenThenOutage ensures raw image id (a whole number of chunks) and reads every chunk but
// the last; their local copies
// are deleted (the cache keeps none in memory); Glance then serves one more request — the
// last chunk, which starts the whole-image check — and is down for the check's reads.
func (f *layerFixture) seenThenOutage(t *testing.T, id string, data []byte) *cache.Image {
	t.Helper()
	ctx := context.Background()
	const cs = chunkstore.DefaultChunkSize
	im, err := f.l.Ensure(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(len(data)) - 2*cs; off >= 0; off -= cs { // backwards: no read-ahead window
		if _, err := readAt(t, im, off, 1); err != nil {
			t.Fatal(err)
		}
	}
	f.c.Flush()
	f.l.mu.Lock()
	p := f.l.prov[id]
	f.l.mu.Unlock()
	known, _ := p.Known()
	for _, d := range known {
		if err := f.c.Local().DeleteChunk(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	f.allow.Store(1)
	if _, err := readAt(t, im, int64(len(data))-1, 1); err != nil {
		t.Fatal(err)
	}
	return im
}

// waitAttempts waits until Stats shows a failed completion attempt of image id.
func (f *layerFixture) waitAttempts(t *testing.T, id string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		for _, c := range f.l.Stats().Completing {
			if c.GlanceID == id && c.Attempts >= 1 && c.LastError != "" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed completion attempt of %s shown within 10 s: %+v", id, f.l.Stats())
		}
	}
}

// TestInspectionRefusesBeforeServing: a qcow2 uploaded as raw, and a raw image larger than
// the limit, are refused before any byte is served; nova's name does not resolve (nova
// downloads it itself and refuses it too) and the refusal is recorded.
func TestInspectionRefusesBeforeServing(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	ctx := context.Background()
	f := newLayer(t, importer.Limits{MaxSize: 1 << 20})
	q := filepath.Join(t.TempDir(), "disguised.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", q, "1M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	disguised := glancetest.Upload(t, "disguised", "raw", "bare", q)
	large, _ := upload(t, 5, 1<<20+1, 0)
	for _, id := range []string{disguised, large} {
		if _, err := f.l.Ensure(ctx, id); !errors.Is(err, inspect.ErrRefused) {
			t.Errorf("ensure %s: %v, want refused", id, err)
		}
		if _, ok, err := f.l.Resolve(ctx, glanceref.NovaName(id)); ok || err != nil {
			t.Errorf("resolve of a refused image's nova name: %v %v, want not found", ok, err)
		}
		if err := f.l.refusals.Glance(id); !errors.Is(err, inspect.ErrRefused) {
			t.Errorf("refusal of %s not recorded: %v", id, err)
		}
	}
	if n := f.glanceBytes(); n != 0 {
		t.Errorf("%d bytes of refused images served", n)
	}
}
