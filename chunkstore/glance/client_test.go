package glance

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/chunkstore/glance/glancetest"
	"github.com/basefs/basefs/chunkstore/storetest"
	"github.com/basefs/basefs/chunkstore/testenv"
)

func TestMain(m *testing.M) { glancetest.Main(m) }

// rawImage uploads dataBytes of random data then zeroBytes of zeros to this process's real
// Glance as a raw image; it returns a client of that Glance, the id and the bytes.
func rawImage(t *testing.T, seed uint64, dataBytes, zeroBytes int) (*Client, string, []byte) {
	t.Helper()
	ep := glancetest.Start(t)
	data := append(storetest.Data(seed, dataBytes), make([]byte, zeroBytes)...)
	p := filepath.Join(t.TempDir(), "image.raw")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	id := glancetest.Upload(t, t.Name(), "raw", "bare", p)
	c, err := New(context.Background(), Options{Endpoint: ep, RequestTimeout: 10 * time.Second, Attempts: 2, Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c, id, data
}

// TestClientReadsARealGlance: metadata as Glance keeps it (status, formats, size, both hashes
// of the data), ranges exactly as asked, the whole download, a property set and read back.
func TestClientReadsARealGlance(t *testing.T) {
	ctx := context.Background()
	c, id, data := rawImage(t, 1, 3<<20, 1<<20)
	im, err := c.Image(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	sha := sha512.Sum512(data)
	sum := md5.Sum(data)
	if im.ID != id || im.Status != "active" || im.DiskFormat != "raw" || im.ContainerFormat != "bare" || im.Size != int64(len(data)) ||
		im.HashAlgo != "sha512" || im.HashValue != hex.EncodeToString(sha[:]) || im.Checksum != hex.EncodeToString(sum[:]) {
		t.Fatalf("metadata %+v does not describe the uploaded image", im)
	}
	if err := im.Usable(); err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]int{{0, 1}, {65536, 65536}, {3<<20 - 100, 200}, {len(data) - 7, 7}} {
		p := make([]byte, r[1])
		if err := c.ReadRange(ctx, id, int64(r[0]), p); err != nil || !bytes.Equal(p, data[r[0]:r[0]+r[1]]) {
			t.Fatalf("range %d+%d: %v (equal %v)", r[0], r[1], err, bytes.Equal(p, data[r[0]:r[0]+r[1]]))
		}
	}
	if err := c.ReadRange(ctx, id, int64(len(data)-7), make([]byte, 8)); err == nil {
		t.Fatal("a range past the end of the image was accepted")
	}
	body, err := c.Download(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(im)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(v, body)
	body.Close()
	if err != nil || v.Check() != nil {
		t.Fatalf("download: %v; check: %v", err, v.Check())
	}
	digest := chunkstore.Digest{7}.String()
	if err := c.SetProperty(ctx, id, ManifestProperty, digest); err != nil {
		t.Fatal(err)
	}
	if im, err := c.Image(ctx, id); err != nil || im.Manifest() != digest {
		t.Fatalf("basefs_manifest after SetProperty: %v, %v", im, err)
	}
}

// TestClientErrorsSayWhat: an unknown id is ErrNotFound, a malformed one is refused before
// any request; a Glance that is down is ErrUnavailable (after its attempts, quickly); corrupt
// data in Glance fails the whole-image check (ErrHashMismatch).
func TestClientErrorsSayWhat(t *testing.T) {
	ctx := context.Background()
	c, id, data := rawImage(t, 2, 1<<20, 0)
	if _, err := c.Image(ctx, "6f3c1a5e-0000-4000-8000-00000000dead"); !chunkstore.IsNotFound(err) {
		t.Errorf("unknown id: %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"../../etc/passwd", "6F3C1A5E-0000-4000-8000-00000000DEAD", id + "/file"} {
		if _, err := c.Image(ctx, bad); err == nil || glanceref.ValidateID(bad) == nil {
			t.Errorf("id %q: %v, want refused", bad, err)
		}
	}
	glancetest.Corrupt(t, id, int64(len(data)/2))
	im, err := c.Image(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	body, err := c.Download(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewVerifier(im)
	io.Copy(v, body)
	body.Close()
	if err := v.Check(); !errors.Is(err, ErrHashMismatch) {
		t.Errorf("corrupt data in Glance: %v, want ErrHashMismatch", err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	down, err := New(ctx, Options{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), RequestTimeout: time.Second, Attempts: 3, Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = down.Image(ctx, id)
	if !IsUnavailable(err) || !strings.Contains(err.Error(), "3 attempts") || time.Since(start) > 5*time.Second {
		t.Errorf("Glance down: %v after %s; want ErrUnavailable after 3 attempts, at once", err, time.Since(start))
	}
	if errors.Is(err, ErrAuth) || chunkstore.IsNotFound(err) {
		t.Errorf("Glance down classified as %v", err)
	}
}

// TestClientConfiguration: an endpoint with credentials, a query or a fragment is refused
// without echoing the secret; no endpoint and no Keystone settings say what to give; a
// Keystone that is down is ErrUnavailable (try again), not ErrAuth (fix the credentials).
func TestClientConfiguration(t *testing.T) {
	ctx := context.Background()
	for _, ep := range []string{"http://nova:s3cret@127.0.0.1:9292", "http://127.0.0.1:9292/?token=s3cret", "http://127.0.0.1:9292/#s3cret", "ftp://127.0.0.1", "127.0.0.1:9292"} {
		_, err := New(ctx, Options{Endpoint: ep})
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("endpoint %q: %v; want refused, the secret not shown", ep, err)
		}
	}
	for _, k := range []string{"OS_CLOUD", "OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME", "OS_USER_DOMAIN_NAME", "OS_PROJECT_DOMAIN_NAME", "OS_DOMAIN_NAME", "OS_PROJECT_ID", "OS_REGION_NAME", "OS_INTERFACE"} {
		t.Setenv(k, "")
	}
	if _, err := New(ctx, Options{}); err == nil || !strings.Contains(err.Error(), "--glance-endpoint") {
		t.Errorf("nothing configured: %v; want what to give", err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("OS_AUTH_URL", fmt.Sprintf("http://127.0.0.1:%d/v3", port))
	t.Setenv("OS_USERNAME", "basefs")
	t.Setenv("OS_PASSWORD", "s3cret")
	t.Setenv("OS_PROJECT_NAME", "service")
	t.Setenv("OS_USER_DOMAIN_NAME", "Default")
	t.Setenv("OS_PROJECT_DOMAIN_NAME", "Default")
	t.Setenv("OS_DOMAIN_NAME", "Default")
	start := time.Now()
	_, err = New(ctx, Options{RequestTimeout: 2 * time.Second})
	if !IsUnavailable(err) || errors.Is(err, ErrAuth) || strings.Contains(err.Error(), "s3cret") || time.Since(start) > 5*time.Second {
		t.Errorf("Keystone down: %v after %s; want ErrUnavailable (not ErrAuth), no password shown, within the request timeout", err, time.Since(start))
	}
}

// TestCatalogListsOncePerInterval: the listing holds every image (a new one after a listing
// is found by the next); within MinInterval a miss is answered from the last listing, and
// concurrent misses share one listing.
func TestCatalogListsOncePerInterval(t *testing.T) {
	ctx := context.Background()
	c, id, _ := rawImage(t, 3, 64<<10, 0)
	ids, err := c.ListIDs(ctx)
	if err != nil || !slices.Contains(ids, id) {
		t.Fatalf("listing %v lacks %s: %v", ids, id, err)
	}
	slow := NewCatalog(c.ListIDs, time.Hour)
	if got, ok, err := slow.Lookup(ctx, glanceref.NovaName(id)); err != nil || !ok || got != id {
		t.Fatalf("lookup of %s's nova name: %q %v %v", id, got, ok, err)
	}
	if _, ok, err := slow.Lookup(ctx, glanceref.NovaName("6f3c1a5e-0000-4000-8000-00000000dead")); ok || err != nil {
		t.Fatalf("lookup of an unknown name: %v %v", ok, err)
	}
	if n := slow.Stats().Listings; n != 1 {
		t.Fatalf("%d listings; a miss within MinInterval must not list again", n)
	}
	_, id2, _ := rawImage(t, 4, 64<<10, 0)
	if _, ok, _ := slow.Lookup(ctx, glanceref.NovaName(id2)); ok {
		t.Fatal("an image uploaded after the listing was found without a listing")
	}
	eager := NewCatalog(c.ListIDs, 0)
	var found atomic.Int64
	done := make(chan struct{})
	for range 8 {
		go func() {
			if _, ok, _ := eager.Lookup(ctx, glanceref.NovaName(id2)); ok {
				found.Add(1)
			}
			done <- struct{}{}
		}()
	}
	for range 8 {
		<-done
	}
	if found.Load() != 8 || eager.Stats().Listings > 2 {
		t.Fatalf("8 concurrent misses: %d found it, %d listings (want 8, shared listings)", found.Load(), eager.Stats().Listings)
	}
}

// TestOriginServesVerifiedRanges: chunks of a registered raw image are read by range and
// verified; a chunk whose bytes in Glance changed is a CorruptError naming where, never
// served; chunks of unregistered or converted images are not found.
func TestOriginServesVerifiedRanges(t *testing.T) {
	ctx := context.Background()
	const cs = chunkstore.MinChunkSize
	c, id, data := rawImage(t, 5, 3*cs+1000, cs)
	m := &chunkstore.Manifest{Size: int64(len(data)), ChunkSize: cs, Source: chunkstore.Source{Format: "qcow2", GlanceID: id}}
	for i := int64(0); i < m.Size; i += cs {
		b := data[i:min(i+cs, m.Size)]
		if chunkstore.IsZeroes(b) {
			m.Chunks = append(m.Chunks, chunkstore.Digest{})
		} else {
			m.Chunks = append(m.Chunks, chunkstore.NewChunk(b).Digest())
		}
	}
	o := NewOrigin(c)
	o.Register(m) // a converted image: its Glance data is not its raw bytes
	if ok, _ := o.HasChunk(ctx, m.Chunks[0]); ok {
		t.Fatal("a converted image's chunks were registered")
	}
	m.Source.Format = "raw"
	o.Register(m)
	for i, d := range m.Chunks {
		if d.IsZero() {
			continue
		}
		ch, err := o.GetChunk(ctx, d)
		if err != nil || !bytes.Equal(ch.Data(), data[int64(i)*cs:min(int64(i+1)*cs, m.Size)]) {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	if _, err := o.GetChunk(ctx, chunkstore.Digest{9}); !chunkstore.IsNotFound(err) {
		t.Fatalf("unregistered chunk: %v, want ErrNotFound", err)
	}
	if _, err := o.GetManifest(ctx, chunkstore.Digest{9}); !chunkstore.IsNotFound(err) {
		t.Fatalf("manifest from Glance: %v, want ErrNotFound", err)
	}
	glancetest.Corrupt(t, id, cs+5)
	_, err := o.GetChunk(ctx, m.Chunks[1])
	var ce *chunkstore.CorruptError
	if !errors.As(err, &ce) || !strings.Contains(ce.Where, id) {
		t.Fatalf("chunk changed in Glance: %v, want a CorruptError naming image %s", err, id)
	}
	if _, err := o.GetChunk(ctx, m.Chunks[0]); err != nil {
		t.Fatalf("an intact chunk after another's corruption: %v", err)
	}
}

// TestRedirectsAndOverlongAnswers plays what the real Glance cannot be made to do: a redirect
// to another host is refused and that host sees no request (no token leaves); a redirect on
// the same host is followed; a range answered with more bytes than asked, or with the whole
// image (200), is an error, never taken as the range.
func TestRedirectsAndOverlongAnswers(t *testing.T) {
	const id = "6f3c1a5e-0000-4000-8000-000000000002"
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	data := storetest.Data(6, 4096)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/images/"+id:
			http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
		case r.URL.Path == "/moved/"+id+"/file":
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[:100])
		case r.URL.Path == "/v2/images/"+id+"/file":
			switch r.Header.Get("Range") {
			case "bytes=0-99":
				http.Redirect(w, r, "/moved/"+id+"/file", http.StatusTemporaryRedirect)
			case "bytes=0-9":
				w.WriteHeader(http.StatusPartialContent) // answered with 100 bytes
				w.Write(data[:100])
			default:
				w.Write(data) // the Range ignored: 200 and the whole image
			}
		}
	}))
	defer srv.Close()
	c, err := New(context.Background(), Options{Endpoint: srv.URL, RequestTimeout: 2 * time.Second, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Image(context.Background(), id); err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Errorf("redirect to another host: %v, want refused", err)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the other host got %d requests", n)
	}
	p := make([]byte, 100)
	if err := c.ReadRange(context.Background(), id, 0, p); err != nil || !bytes.Equal(p, data[:100]) {
		t.Errorf("range redirected on the same host: %v", err)
	}
	if err := c.ReadRange(context.Background(), id, 0, make([]byte, 10)); err == nil {
		t.Error("an answer longer than the range was taken")
	}
	if err := c.ReadRange(context.Background(), id, 0, make([]byte, 50)); err == nil {
		t.Error("a 200 with the whole image was taken as a range")
	}
}
