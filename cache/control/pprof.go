package control

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"time"
)

// handleProfiles answers Go's runtime profiles of the serving process (net/http/pprof) at
// /debug/pprof/…. They are on the control socket, not on the metrics listener: the socket
// is root's alone (0600) and every daemon has it, while --metrics-addr is optional and may
// face the network. A profile costs nothing until it is asked for.
func handleProfiles(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index) // heap, goroutine, allocs, block, mutex…
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// CPUProfile records the serving process's CPU profile for d (whole seconds, at least one)
// and writes it to w in pprof's format (gzipped protocol buffers; `go tool pprof` reads it).
// During a graceful restart either serving process may answer.
func (c *Client) CPUProfile(ctx context.Context, d time.Duration, w io.Writer) error {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	resp, err := c.send(ctx, http.MethodGet, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs))
	if err != nil {
		return fmt.Errorf("CPU profile: %w", err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("CPU profile from the basefs daemon at %s: %w", c.socket, err)
	}
	return nil
}
