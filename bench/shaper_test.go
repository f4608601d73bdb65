package bench

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"
)

// TestShaperRate checks that the shaper passes bodies whole, counts their bytes, holds the
// link's rate for one and for several concurrent responses, and adds its latency.
func TestShaperRate(t *testing.T) {
	body := bytes.Repeat([]byte("basefs"), (2<<20)/6) // ~2 MiB
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	const bps = 80e6 // 10 MB/s
	sh := NewShaper(u, bps, 20*time.Millisecond)
	srv := httptest.NewServer(sh)
	defer srv.Close()

	get := func() {
		resp, err := http.Get(srv.URL + "/x")
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(b, body) {
			t.Errorf("body: %d bytes, err %v; want %d bytes", len(b), err, len(body))
		}
	}
	for _, n := range []int{1, 3} {
		b0 := sh.Bytes()
		t0 := time.Now()
		var wg sync.WaitGroup
		for range n {
			wg.Go(get)
		}
		wg.Wait()
		took := time.Since(t0).Seconds()
		want := float64(n*len(body))/(bps/8) + 0.020
		// Never faster than the rate; the upper bound allows for a loaded 2-core host under
		// -race (the shaper's own overhead is what it catches: twice the time is a bug).
		if took < want*0.9 || took > want*2 {
			t.Errorf("%d concurrent responses of %d bytes took %.3f s, want about %.3f s", n, len(body), took, want)
		}
		if got := sh.Bytes() - b0; got != int64(n*len(body)) {
			t.Errorf("counted %d bytes, want %d", got, n*len(body))
		}
	}
	if sh.Requests() != 4 {
		t.Errorf("%d requests counted, want 4", sh.Requests())
	}
}
