package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

// ShaperCommand is the first argument with which scripts/fleet.sh starts basefs-bench as a
// standalone Shaper: the shaped link between a fleet's hosts (network namespaces) and a
// service in the root namespace that listens on loopback only (Ceph RGW, Glance). netem is
// not in this kernel, so latency is added here, in user space; tc shapes the hosts' own links.
const ShaperCommand = "shaper"

// ShaperStatsPath is answered by the standalone shaper itself (never forwarded): JSON
// {"bytes": N, "requests": N}, what it passed so far.
const ShaperStatsPath = "/.basefs-shaper/stats"

// ShaperStats is the standalone shaper's answer at ShaperStatsPath.
type ShaperStats struct {
	Bytes    int64 `json:"bytes"`
	Requests int64 `json:"requests"`
}

// ServeShaper runs a Shaper on --listen to --upstream until SIGTERM/SIGINT; it prints
// "listening ADDR" on stdout once it accepts connections. The exit status is 2 for a bad
// command line, 1 when it cannot listen.
func ServeShaper(args []string, stdout, stderr io.Writer) int {
	f := pflag.NewFlagSet(ShaperCommand, pflag.ContinueOnError)
	f.SetOutput(stderr)
	listen := f.String("listen", "", "`IP:PORT` to listen on")
	upstream := f.String("upstream", "", "`URL` of the service behind the link")
	bits := f.Float64("bandwidth", 0, "the link's `BITS` per second (0: unlimited)")
	latency := f.Duration("latency", 0, "added before each response")
	if err := f.Parse(args); err != nil {
		return 2
	}
	u, err := url.Parse(*upstream)
	if *listen == "" || err != nil || u.Scheme != "http" || u.Host == "" || *bits < 0 || *latency < 0 {
		fmt.Fprintf(stderr, "%s: want --listen IP:PORT --upstream http://HOST:PORT [--bandwidth BITS ≥ 0] [--latency D ≥ 0]\n", ShaperCommand)
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", ShaperCommand, err)
		return 1
	}
	sh := NewShaper(u, *bits, *latency)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+ShaperStatsPath, func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(ShaperStats{Bytes: sh.Bytes(), Requests: sh.Requests()})
	})
	mux.Handle("/", sh)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { <-ctx.Done(); srv.Close() }()
	fmt.Fprintf(stdout, "listening %s\n", ln.Addr())
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		fmt.Fprintf(stderr, "%s: %v\n", ShaperCommand, err)
		return 1
	}
	return 0
}
