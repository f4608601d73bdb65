package daemon

import (
	"net/http"
	"net/http/pprof"
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
