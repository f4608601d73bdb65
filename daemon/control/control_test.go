package control

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basefs/basefs/chunkstore"
)

// TestClientErrors: what a daemon answers besides 200 reaches the caller as its message, with
// the sentinel a caller acts on — not found, or a request an older daemon does not know (its
// mux's 404 for restart, a supervisor without a restart desk's 501), which `basefs restart`
// answers by falling back to SIGHUP.
func TestClientErrors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), SocketName)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/images/{digest}/ensure", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":"image 0100…: no origin has it"}`))
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotImplemented)
		w.Write([]byte(`{"error":"not here"}`))
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	defer srv.Close()
	c := NewClient(sock)
	ctx := context.Background()
	if _, err := c.EnsureImage(ctx, chunkstore.Digest{1}); !errors.Is(err, chunkstore.ErrNotFound) || !strings.Contains(err.Error(), "no origin has it") {
		t.Errorf("404: %v", err)
	}
	if _, err := c.Status(ctx); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "not here") {
		t.Errorf("501: %v", err)
	}
	if _, err := c.Restart(ctx); !errors.Is(err, ErrUnsupported) {
		t.Errorf("restart asked of a daemon that does not know it: %v", err)
	}
	if _, err := SocketFromMount(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a basefs mount") {
		t.Errorf("a plain directory: %v", err)
	}
}
