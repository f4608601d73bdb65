package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/basefs/basefs/chunkstore/httpx"
)

// Shaper is a rate-limiting HTTP reverse proxy: every response body crosses one shared link
// of a fixed bandwidth (concurrent responses share it), and every request first waits one
// round trip of latency. It counts the requests and body bytes it passed, so the bytes taken
// from an origin are measured the same way whoever takes them.
//
// The link is paced by a virtual clock (a token bucket): each piece of a body reserves its
// transmission time after the link's previous reservation and is written when that time
// comes; a schedule that fell behind the clock (timer overshoot) catches up by at most
// shapeBurst, so the average rate holds and bursts stay short.
type Shaper struct {
	rate    float64 // bytes per second; 0: unlimited
	latency time.Duration
	proxy   *httputil.ReverseProxy

	mu   sync.Mutex // guards next
	next time.Time  // when the link is free

	bytes, requests atomic.Int64
}

// shapeQuantum is the largest piece of a body written in one reservation.
const shapeQuantum = 16 << 10

// NewShaper returns a proxy to upstream over a link of bitsPerSecond (0: unlimited) with
// latency added before each response.
func NewShaper(upstream *url.URL, bitsPerSecond float64, latency time.Duration) *Shaper {
	p := httputil.NewSingleHostReverseProxy(upstream)
	p.Transport = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        128,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	p.ErrorLog = nil
	return &Shaper{rate: bitsPerSecond / 8, latency: latency, proxy: p}
}

// Bytes returns the response body bytes passed so far.
func (s *Shaper) Bytes() int64 { return s.bytes.Load() }

// Requests returns the requests served so far.
func (s *Shaper) Requests() int64 { return s.requests.Load() }

func (s *Shaper) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if s.latency > 0 {
		if httpx.Sleep(r.Context(), s.latency) != nil {
			return
		}
	}
	s.proxy.ServeHTTP(&shapedWriter{ResponseWriter: w, s: s, ctx: r.Context()}, r)
}

// shapeBurst is how far the link's schedule may lag behind the clock: a writer that slept
// longer than asked (timers overshoot by tens of microseconds to a millisecond) may catch up
// by this much, so the average rate holds; after a longer idle time the link starts afresh.
const shapeBurst = 5 * time.Millisecond

// reserve books n bytes on the link and returns when their transmission ends.
func (s *Shaper) reserve(n int) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if floor := time.Now().Add(-shapeBurst); s.next.Before(floor) {
		s.next = floor // the link was idle
	}
	s.next = s.next.Add(time.Duration(float64(n) / s.rate * float64(time.Second)))
	return s.next
}

type shapedWriter struct {
	http.ResponseWriter
	s   *Shaper
	ctx context.Context
}

func (w *shapedWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), shapeQuantum)
		if w.s.rate > 0 {
			if err := httpx.Sleep(w.ctx, time.Until(w.s.reserve(n))); err != nil {
				return written, err
			}
		}
		m, err := w.ResponseWriter.Write(p[:n])
		written += m
		w.s.bytes.Add(int64(m))
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

func (w *shapedWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *shapedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// origin is a static file server (the upstream: a published layout under pub/, raw images
// under raw/) behind a Shaper, both on loopback.
type origin struct {
	Root   string // the served directory
	URL    string // the shaper's base URL, e.g. http://127.0.0.1:PORT
	Shaper *Shaper
	up, sh *http.Server
}

// startOrigin serves root over loopback behind a shaper of bitsPerSecond and latency.
func startOrigin(root string, bitsPerSecond float64, latency time.Duration) (*origin, error) {
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	shLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		upLn.Close()
		return nil, err
	}
	o := &origin{Root: root, URL: "http://" + shLn.Addr().String()}
	upURL, _ := url.Parse("http://" + upLn.Addr().String())
	o.Shaper = NewShaper(upURL, bitsPerSecond, latency)
	o.up = &http.Server{Handler: http.FileServer(http.Dir(root)), ReadHeaderTimeout: 10 * time.Second}
	o.sh = &http.Server{Handler: o.Shaper, ReadHeaderTimeout: 10 * time.Second}
	go o.up.Serve(upLn)
	go o.sh.Serve(shLn)
	return o, nil
}

func (o *origin) Close() {
	o.sh.Close()
	o.up.Close()
}

func (o *origin) String() string {
	return fmt.Sprintf("%s (serving %s)", o.URL, o.Root)
}
