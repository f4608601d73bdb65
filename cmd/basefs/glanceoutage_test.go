package main

import (
	"bytes"
	"crypto/sha256"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance/glancetest"
)

// outageProxy forwards to Glance; once armed, it stops the real Glance (glancetest.Down)
// just before forwarding the armed-th range request it sees, so an outage begins at a known
// point of the daemon's work (the faults themselves are the real Glance's).
type outageProxy struct {
	t     *testing.T
	mu    sync.Mutex
	armed int // range requests still to pass before Glance is stopped (0: not armed)
	down  chan struct{}
	*httputil.ReverseProxy
}

func newOutageProxy(t *testing.T, ep string) (*outageProxy, string) {
	u, err := url.Parse(ep)
	if err != nil {
		t.Fatal(err)
	}
	p := &outageProxy{t: t, down: make(chan struct{}), ReverseProxy: httputil.NewSingleHostReverseProxy(u)}
	p.ErrorLog = log.New(io.Discard, "", 0) // a refused connection while Glance is down is the point
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv.URL
}

func (p *outageProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Range") != "" {
		p.mu.Lock()
		if p.armed > 0 {
			if p.armed--; p.armed == 0 {
				glancetest.Down(p.t)
				close(p.down)
			}
		}
		p.mu.Unlock()
	}
	p.ReverseProxy.ServeHTTP(w, r)
}

func (p *outageProxy) arm(n int) {
	p.mu.Lock()
	p.armed = n
	p.mu.Unlock()
}

// TestGlanceCompletionSurvivesOutage: a lazily read raw image whose completion needs Glance
// (its chunks were evicted) while Glance is stopped for ~30 s. The image is never marked bad:
// reads of what is local keep answering, status shows the retries, and once Glance is back
// the image completes and reads right.
func TestGlanceCompletionSurvivesOutage(t *testing.T) {
	ep := glancetest.Start(t)
	t.Cleanup(func() { glancetest.Up(t) }) // the next test's Glance, whatever happened here
	proxy, purl := newOutageProxy(t, ep)
	dir := t.TempDir()
	const cs = chunkstore.DefaultChunkSize
	id, data := glanceImage(t, dir, 61, 32*cs, 0)
	d := startDaemon(t, filepath.Join(dir, "state"), filepath.Join(dir, "mnt"), append([]string{"--glance-endpoint", purl,
		"--memory-cache", "0", "--cache-size", "0"}, noFill...)...)
	st, err := ensureGlance(t, d, id)
	if err != nil || !st.Provisional {
		t.Fatalf("ensure: %+v, %v", st, err)
	}
	p := filepath.Join(d.mnt, st.Name)
	if b, err := preadFile(t, p, cs, len(data)-cs); err != nil || !bytes.Equal(b, data[cs:]) {
		t.Fatalf("read all but chunk 0: %v", err)
	}
	// Evict every chunk read (none is referenced by a manifest yet): completion must ask Glance.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		gc(t, d, false)
		if n := storeFiles(t, d.state); n == 0 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%d local chunks left after gc with --cache-size 0", n)
		}
	}
	// Chunk 0's read is the last range request Glance answers: completion starts, asks Glance
	// for chunk 1, and Glance is down.
	proxy.arm(2)
	start := time.Now()
	if b, err := preadFile(t, p, 0, 4096); err != nil || !bytes.Equal(b, data[:4096]) {
		t.Fatalf("read chunk 0: %v", err)
	}
	select {
	case <-proxy.down:
	case <-time.After(30 * time.Second):
		t.Fatalf("completion never asked Glance\n%s", d.log)
	}
	maxAttempts := 0
	for time.Since(start) < 30*time.Second {
		if b, err := preadFile(t, p, 0, 4096); err != nil || !bytes.Equal(b, data[:4096]) {
			t.Fatalf("%v into the outage, a read of what is local failed: %v\n%s", time.Since(start).Round(time.Second), err, d.log)
		}
		if g := d.status().Glance; g != nil && g.Layer != nil && len(g.Layer.Completing) == 1 {
			c := g.Layer.Completing[0]
			if c.GlanceID != id || c.LastError == "" || c.NextTry.IsZero() {
				t.Fatalf("status of the waiting completion: %+v", c)
			}
			maxAttempts = max(maxAttempts, c.Attempts)
		}
		time.Sleep(time.Second)
	}
	if maxAttempts < 3 {
		t.Fatalf("status showed at most %d completion attempts during 30 s of outage; want several\n%s", maxAttempts, d.log)
	}
	glancetest.Up(t)
	back := time.Now()
	// A read Glance answers again tells the waiting completion to try at once.
	if b, err := preadFile(t, p, cs, 4096); err != nil || !bytes.Equal(b, data[cs:cs+4096]) {
		t.Fatalf("read after Glance came back: %v", err)
	}
	digest := waitDigest(t, d, id)
	t.Logf("outage of %v: %d completion attempts failed, completed %v after Glance came back",
		back.Sub(start).Round(time.Second), maxAttempts, time.Since(back).Round(time.Millisecond))
	if sum := shaFile(t, filepath.Join(d.mnt, digest)); sum != sha256.Sum256(data) {
		t.Fatal("the completed image reads other bytes")
	}
	if g := d.status().Glance.Layer; len(g.Completing) != 0 || g.CompletionRetries < 3 {
		t.Fatalf("status after completion: %+v", g)
	}
	if _, err := os.Stat(filepath.Join(d.mnt, digest)); err != nil {
		t.Fatal(err)
	}
}
