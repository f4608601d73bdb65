package glance

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestEveryRequestHasADeadline: a Glance that never answers its metadata or its listing, or
// trickles a range, costs a bounded time — a fault the real Glance cannot be made to show,
// so a server of our own plays it.
func TestEveryRequestHasADeadline(t *testing.T) {
	const id = "6f3c1a5e-0000-4000-8000-000000000001"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/file"):
			// Headers at once, then one byte every 50 ms: never a stall, far below any rate.
			w.Header().Set("Content-Length", "65536")
			w.WriteHeader(http.StatusPartialContent)
			for range 65536 {
				if _, err := w.Write([]byte{1}); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		default: // metadata and listing: never answer
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	c, err := New(context.Background(), Options{Endpoint: srv.URL, RequestTimeout: 300 * time.Millisecond,
		StallTimeout: 10 * time.Second, MinRate: 1 << 20, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []struct {
		name  string
		bound time.Duration
		run   func(ctx context.Context) error
	}{
		{"metadata", 300 * time.Millisecond, func(ctx context.Context) error { _, err := c.Image(ctx, id); return err }},
		{"listing", listTimeout * 300 * time.Millisecond, func(ctx context.Context) error { _, err := c.ListIDs(ctx); return err }},
		{"trickled range", 300*time.Millisecond + 65536*time.Second/(1<<20), func(ctx context.Context) error {
			return c.ReadRange(ctx, id, 0, make([]byte, 65536))
		}},
	} {
		start := time.Now()
		err := op.run(context.Background())
		took := time.Since(start)
		if err == nil {
			t.Errorf("%s: succeeded against a server that does not answer", op.name)
		}
		if took > op.bound+3*time.Second {
			t.Errorf("%s: failed after %s, its deadline is %s", op.name, took, op.bound)
		}
		t.Logf("%s: %s: %v", op.name, took.Round(time.Millisecond), err)
	}
}
