package httpstore_test

// Faults a real web server does not produce on demand (cut bodies, stalls, 5xx, lies), injected
// with a fake server. Everything a real server does is tested against nginx in nginx_test.go.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/httpstore"
	"github.com/basefs/basefs/chunkstore/storetest"
)

// fast keeps the fault tests quick: short timeouts, tiny backoffs, 3 attempts.
func fast(t *testing.T) httpstore.Options {
	return httpstore.Options{
		Timeout:      5 * time.Second,
		StallTimeout: 150 * time.Millisecond,
		MaxAttempts:  3,
		BaseBackoff:  time.Millisecond,
		MaxBackoff:   5 * time.Millisecond,
		Logger:       testLogger(t),
	}
}

// fake serves handle(w, r, n) under /pub, n counting the requests from 1, and returns a store
// reading it and the request counter.
func fake(t *testing.T, opts httpstore.Options, handle func(w http.ResponseWriter, r *http.Request, n int)) (*httpstore.Store, *atomic.Int32) {
	t.Helper()
	var count atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/pub/chunks/") && !strings.HasPrefix(r.URL.Path, "/pub/manifests/") {
			t.Errorf("request for %s, outside the layout", r.URL.Path)
		}
		handle(w, r, int(count.Add(1)))
	}))
	t.Cleanup(srv.Close)
	s, err := httpstore.New(srv.URL+"/pub", opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, &count
}

func serve(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// cut announces body whole, sends half of it, and drops the connection.
func cut(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body[:len(body)/2])
	w.(http.Flusher).Flush()
	panic(http.ErrAbortHandler)
}

// block waits until the client goes away (or 10 s pass).
func block(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

func wantCount(t *testing.T, count *atomic.Int32, want int32) {
	t.Helper()
	if n := count.Load(); n != want {
		t.Fatalf("%d requests; want %d", n, want)
	}
}

func TestFaults(t *testing.T) {
	ctx := context.Background()
	data := storetest.Data(7, 300000)
	c := chunkstore.NewChunk(data)
	obj := chunkstore.AppendObject(nil, data)
	other := chunkstore.AppendObject(nil, storetest.Data(8, 300000))

	getOK := func(t *testing.T, s *httpstore.Store) {
		t.Helper()
		got, err := s.GetChunk(ctx, c.Digest())
		if err != nil {
			t.Fatalf("GetChunk: %v", err)
		}
		if !bytes.Equal(got.Data(), data) {
			t.Fatal("GetChunk returned other bytes")
		}
	}
	// getTransient expects the attempts to run out on a transient failure.
	getTransient := func(t *testing.T, s *httpstore.Store, attempts int, cause string) error {
		t.Helper()
		_, err := s.GetChunk(ctx, c.Digest())
		if err == nil {
			t.Fatal("GetChunk succeeded")
		}
		msg := err.Error()
		for _, want := range []string{s.ChunkURL(c.Digest()), "after " + strconv.Itoa(attempts) + " attempts", cause} {
			if !strings.Contains(msg, want) {
				t.Fatalf("error %q does not say %q", msg, want)
			}
		}
		if !httpstore.IsTransient(err) || chunkstore.IsNotFound(err) || chunkstore.IsCorrupt(err) {
			t.Fatalf("error %q: IsTransient %v, IsNotFound %v, IsCorrupt %v; want only transient", msg, httpstore.IsTransient(err), chunkstore.IsNotFound(err), chunkstore.IsCorrupt(err))
		}
		return err
	}
	wantCorrupt := func(t *testing.T, err error, kind string, d chunkstore.Digest, where string) *chunkstore.CorruptError {
		t.Helper()
		var ce *chunkstore.CorruptError
		if !errors.As(err, &ce) || ce.Digest != d || ce.Where != where || (ce.Kind != kind && !(kind == "chunk" && ce.Kind == "")) {
			t.Fatalf("error %v; want a %s CorruptError naming %s at %s", err, kind, d.Short(), where)
		}
		if httpstore.IsTransient(err) {
			t.Fatalf("IsTransient(%v) = true", err)
		}
		return ce
	}

	t.Run("TruncatedThenWhole", func(t *testing.T) {
		s, n := fake(t, fast(t), func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				cut(w, obj)
			}
			serve(w, obj)
		})
		getOK(t, s)
		wantCount(t, n, 2)
	})
	t.Run("TruncatedAlways", func(t *testing.T) {
		s, n := fake(t, fast(t), func(w http.ResponseWriter, r *http.Request, n int) { cut(w, obj) })
		err := getTransient(t, s, 3, "unexpected EOF")
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("error %v does not wrap io.ErrUnexpectedEOF", err)
		}
		wantCount(t, n, 3)
	})
	t.Run("ClosedWithoutResponse", func(t *testing.T) {
		s, n := fake(t, fast(t), func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				panic(http.ErrAbortHandler)
			}
			serve(w, obj)
		})
		getOK(t, s)
		wantCount(t, n, 2)
	})

	t.Run("WrongBytesOnce", func(t *testing.T) {
		bad := bytes.Clone(obj)
		bad[len(bad)/2] ^= 1
		s, n := fake(t, fast(t), func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				serve(w, bad)
				return
			}
			if r.Header.Get("Cache-Control") != "no-cache" {
				t.Errorf("the retry after bad bytes has Cache-Control %q; want no-cache", r.Header.Get("Cache-Control"))
			}
			serve(w, obj)
		})
		getOK(t, s)
		wantCount(t, n, 2)
	})
	t.Run("WrongBytesAlways", func(t *testing.T) {
		s, n := fake(t, fast(t), func(w http.ResponseWriter, r *http.Request, n int) { serve(w, other) })
		_, err := s.GetChunk(ctx, c.Digest())
		ce := wantCorrupt(t, err, "chunk", c.Digest(), s.ChunkURL(c.Digest()))
		if want := chunkstore.Sum(storetest.Data(8, 300000)); ce.Got != want {
			t.Fatalf("CorruptError.Got = %s; want %s", ce.Got, want)
		}
		wantCount(t, n, 2) // retried once, not to the bound
	})
	t.Run("NotAnObject", func(t *testing.T) {
		s, n := fake(t, fast(t), func(w http.ResponseWriter, r *http.Request, n int) {
			serve(w, []byte("<html>Welcome to our captive portal</html>"))
		})
		_, err := s.GetChunk(ctx, c.Digest())
		wantCorrupt(t, err, "chunk", c.Digest(), s.ChunkURL(c.Digest()))
		wantCount(t, n, 2)
	})

	t.Run("5xxThenOK", func(t *testing.T) {
		s, n := fake(t, fast(t), func(w http.ResponseWriter, r *http.Request, n int) {
			switch n {
			case 1:
				http.Error(w, "boom", http.StatusInternalServerError)
			case 2:
				http.Error(w, "busy", http.StatusServiceUnavailable)
			default:
				serve(w, obj)
			}
		})
		getOK(t, s)
		wantCount(t, n, 3)
	})
	t.Run("500Always", func(t *testing.T) {
		s, n := fake(t, fast(t), func(w http.ResponseWriter, r *http.Request, n int) {
			http.Error(w, "boom", http.StatusInternalServerError)
		})
		getTransient(t, s, 3, "500 Internal Server Error")
		wantCount(t, n, 3)
	})
	t.Run("429RetryAfter", func(t *testing.T) {
		s, n := fake(t, fast(t), func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				w.Header().Set("Retry-After", "1") // longer than MaxBackoff: capped to it
				http.Error(w, "slow down", http.StatusTooManyRequests)
				return
			}
			serve(w, obj)
		})
		start := time.Now()
		getOK(t, s)
		wantCount(t, n, 2)
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("took %v: Retry-After was not capped by MaxBackoff", d)
		}
	})

	t.Run("StallInBodyThenOK", func(t *testing.T) {
		s, n := fake(t, fast(t), func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				w.Header().Set("Content-Length", strconv.Itoa(len(obj)))
				w.Write(obj[:1000])
				w.(http.Flusher).Flush()
				block(r)
				return
			}
			serve(w, obj)
		})
		start := time.Now()
		getOK(t, s)
		wantCount(t, n, 2)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %v; the stall timeout is 150ms", d)
		}
	})
	t.Run("StallBeforeHeaders", func(t *testing.T) {
		s, n := fake(t, fast(t), func(w http.ResponseWriter, r *http.Request, n int) { block(r) })
		start := time.Now()
		getTransient(t, s, 3, "stall timeout")
		wantCount(t, n, 3)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %v for 3 stalls of 150ms", d)
		}
	})
	t.Run("SlowDripTimesOut", func(t *testing.T) {
		// A byte every 20 ms never stalls, but the attempt exceeds its Timeout.
		opts := fast(t)
		opts.Timeout = 300 * time.Millisecond
		opts.MaxAttempts = 2
		s, n := fake(t, opts, func(w http.ResponseWriter, r *http.Request, n int) {
			w.Header().Set("Content-Length", strconv.Itoa(len(obj)))
			for i := range obj {
				if _, err := w.Write(obj[i : i+1]); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
		getTransient(t, s, 2, "timeout")
		wantCount(t, n, 2)
	})

	t.Run("ConnectionRefused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close() // nothing listens on its port now
		s, err := httpstore.New(srv.URL, fast(t))
		if err != nil {
			t.Fatal(err)
		}
		getTransient(t, s, 3, "connection refused")
		if ok, err := s.HasChunk(ctx, c.Digest()); ok || !httpstore.IsTransient(err) {
			t.Fatalf("HasChunk on a dead server = %v, %v; want false and a transient error", ok, err)
		}
	})

	t.Run("NotFoundIsNotRetried", func(t *testing.T) {
		s, n := fake(t, fast(t), func(w http.ResponseWriter, r *http.Request, n int) { http.NotFound(w, r) })
		if _, err := s.GetChunk(ctx, c.Digest()); !chunkstore.IsNotFound(err) || httpstore.IsTransient(err) {
			t.Fatalf("GetChunk = %v; want ErrNotFound", err)
		}
		wantCount(t, n, 1)
		if ok, err := s.HasChunk(ctx, c.Digest()); ok || err != nil {
			t.Fatalf("HasChunk = %v, %v; want false, nil", ok, err)
		}
		wantCount(t, n, 2)
	})
	t.Run("OtherClientErrorsArePermanent", func(t *testing.T) {
		for _, code := range []int{http.StatusForbidden, http.StatusUnauthorized, http.StatusBadRequest} {
			s, n := fake(t, fast(t), func(w http.ResponseWriter, r *http.Request, n int) { http.Error(w, "no", code) })
			_, err := s.GetChunk(ctx, c.Digest())
			if err == nil || httpstore.IsTransient(err) || chunkstore.IsNotFound(err) || chunkstore.IsCorrupt(err) ||
				!strings.Contains(err.Error(), strconv.Itoa(code)) || !strings.Contains(err.Error(), s.ChunkURL(c.Digest())) {
				t.Fatalf("GetChunk with %d = %v; want a permanent error naming the status and URL", code, err)
			}
			wantCount(t, n, 1)
			if ok, err := s.HasManifest(ctx, c.Digest()); ok || err == nil {
				t.Fatalf("HasManifest with %d = %v, %v; want an error", code, ok, err)
			}
			wantCount(t, n, 2)
		}
	})
	t.Run("HeadRetried", func(t *testing.T) {
		s, n := fake(t, fast(t), func(w http.ResponseWriter, r *http.Request, n int) {
			if r.Method != http.MethodHead {
				t.Errorf("Has sent %s; want HEAD", r.Method)
			}
			if n == 1 {
				w.WriteHeader(http.StatusBadGateway)
				return
			}
			w.WriteHeader(http.StatusOK)
		})
		if ok, err := s.HasChunk(ctx, c.Digest()); !ok || err != nil {
			t.Fatalf("HasChunk = %v, %v; want true, nil", ok, err)
		}
		wantCount(t, n, 2)
	})

	t.Run("OversizedAnnounced", func(t *testing.T) {
		s, n := fake(t, fast(t), func(w http.ResponseWriter, r *http.Request, n int) {
			w.Header().Set("Content-Length", strconv.Itoa(httpstore.MaxChunkObjectSize+1))
			w.Write(make([]byte, 4096)) // the store must not wait for the rest
		})
		_, err := s.GetChunk(ctx, c.Digest())
		wantCorrupt(t, err, "chunk", c.Digest(), s.ChunkURL(c.Digest()))
		if !strings.Contains(err.Error(), "limit") {
			t.Fatalf("error %q does not mention the limit", err)
		}
		wantCount(t, n, 2)
	})
	t.Run("OversizedStreamed", func(t *testing.T) {
		var sent atomic.Int64
		opts := fast(t)
		opts.StallTimeout = 5 * time.Second // 17 MiB under -race on a loaded machine is slow, not stalled
		s, n := fake(t, opts, func(w http.ResponseWriter, r *http.Request, n int) {
			// No Content-Length: chunked, 1 MiB more than the bound; stop when the client does.
			buf := make([]byte, 64<<10)
			for total := 0; total < httpstore.MaxChunkObjectSize+1<<20; total += len(buf) {
				k, err := w.Write(buf)
				sent.Add(int64(k))
				if err != nil {
					return
				}
			}
		})
		_, err := s.GetChunk(ctx, c.Digest())
		wantCorrupt(t, err, "chunk", c.Digest(), s.ChunkURL(c.Digest()))
		wantCount(t, n, 2)
	})
	t.Run("ManifestOversized", func(t *testing.T) {
		opts := fast(t)
		opts.MaxManifestSize = 1000
		s, _ := fake(t, opts, func(w http.ResponseWriter, r *http.Request, n int) {
			w.Write(bytes.Repeat([]byte("-\n"), 1000))
		})
		d := chunkstore.Sum([]byte("big"))
		_, err := s.GetManifest(ctx, d)
		wantCorrupt(t, err, "manifest", d, s.ManifestURL(d))
	})

	t.Run("ManifestWrongName", func(t *testing.T) {
		m := &chunkstore.Manifest{Size: 10, ChunkSize: 1 << 16, Chunks: []chunkstore.Digest{chunkstore.Sum([]byte("x"))}}
		md, enc, err := m.Digest()
		if err != nil {
			t.Fatal(err)
		}
		wrong := chunkstore.Sum([]byte("another image"))
		s, n := fake(t, fast(t), func(w http.ResponseWriter, r *http.Request, n int) { serve(w, enc) })
		got, err := s.GetManifest(ctx, md)
		if err != nil || got.Size != 10 {
			t.Fatalf("GetManifest(right name) = %+v, %v", got, err)
		}
		wantCount(t, n, 1)
		_, err = s.GetManifest(ctx, wrong)
		if ce := wantCorrupt(t, err, "manifest", wrong, s.ManifestURL(wrong)); ce.Got != md {
			t.Fatalf("CorruptError.Got = %s; want %s", ce.Got, md)
		}
		wantCount(t, n, 3)
	})
	t.Run("ManifestNamedButMalformed", func(t *testing.T) {
		// Bytes that hash to the name asked for but are no manifest: the same bytes would come
		// again, so there is no second request.
		b := []byte("basefs-manifest 2\n")
		d := chunkstore.Sum(b)
		s, n := fake(t, fast(t), func(w http.ResponseWriter, r *http.Request, n int) { serve(w, b) })
		_, err := s.GetManifest(ctx, d)
		wantCorrupt(t, err, "manifest", d, s.ManifestURL(d))
		if !errors.Is(err, chunkstore.ErrManifest) {
			t.Fatalf("error %v does not wrap ErrManifest", err)
		}
		wantCount(t, n, 1)
	})

	t.Run("CancelDuringBackoff", func(t *testing.T) {
		opts := fast(t)
		opts.BaseBackoff, opts.MaxBackoff = 10*time.Second, 10*time.Second
		s, n := fake(t, opts, func(w http.ResponseWriter, r *http.Request, n int) {
			http.Error(w, "boom", http.StatusInternalServerError)
		})
		for _, mk := range []func() (context.Context, context.CancelFunc){
			func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(ctx)
				time.AfterFunc(100*time.Millisecond, cancel)
				return ctx, cancel
			},
			func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 100*time.Millisecond) },
		} {
			n.Store(0)
			cctx, cancel := mk()
			start := time.Now()
			_, err := s.GetChunk(cctx, c.Digest())
			cancel()
			if d := time.Since(start); d > time.Second {
				t.Fatalf("GetChunk returned %v after the context ended", d)
			}
			if !errors.Is(err, cctx.Err()) || httpstore.IsTransient(err) || !strings.Contains(err.Error(), "500") {
				t.Fatalf("GetChunk = %v; want the context's error (%v), not transient, naming the last cause", err, cctx.Err())
			}
			wantCount(t, n, 1)
		}
	})
	t.Run("CancelDuringBody", func(t *testing.T) {
		opts := fast(t)
		opts.StallTimeout = 10 * time.Second
		s, n := fake(t, opts, func(w http.ResponseWriter, r *http.Request, n int) {
			w.Header().Set("Content-Length", strconv.Itoa(len(obj)))
			w.Write(obj[:1000])
			w.(http.Flusher).Flush()
			block(r)
		})
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, err := s.GetChunk(cctx, c.Digest())
		if d := time.Since(start); d > time.Second {
			t.Fatalf("GetChunk returned %v after the context was cancelled", d)
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("GetChunk = %v; want context.Canceled", err)
		}
		wantCount(t, n, 1)
	})
}
