package httpstore_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/storetest"
)

// TestRedirectsStayWithTheOrigin: a redirect within the origin is followed; one to another
// host is refused and that host gets no request.
func TestRedirectsStayWithTheOrigin(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	c := chunkstore.NewChunk(storetest.Data(7, 4096))
	obj := chunkstore.AppendObject(nil, c.Data())
	away := false
	s, _ := fake(t, fast(t), func(w http.ResponseWriter, r *http.Request, n int) {
		switch {
		case away:
			http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
		case r.URL.Query().Get("moved") == "":
			http.Redirect(w, r, r.URL.Path+"?moved=1", http.StatusFound)
		default:
			serve(w, obj)
		}
	})
	if _, err := s.GetChunk(context.Background(), c.Digest()); err != nil {
		t.Fatalf("a redirect within the origin: %v", err)
	}
	away = true
	_, err := s.GetChunk(context.Background(), c.Digest())
	if err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Errorf("a redirect to another host: %v, want refused", err)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the other host got %d requests", n)
	}
}
