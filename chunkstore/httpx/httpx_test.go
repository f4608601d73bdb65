package httpx

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	p := Policy{Attempts: 5, Base: 100 * time.Millisecond, Max: time.Second}
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 40: time.Second} {
		for range 50 {
			if d := p.Backoff(attempt, 0); d < want/2 || d > want {
				t.Fatalf("attempt %d: %v, want in [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
	if d := p.Backoff(1, 700*time.Millisecond); d != 700*time.Millisecond {
		t.Fatalf("a server's hint: %v", d)
	}
	if d := p.Backoff(1, time.Hour); d != time.Second {
		t.Fatalf("a hint past Max: %v", d)
	}
}

func TestDo(t *testing.T) {
	p := Policy{Attempts: 3, Base: time.Millisecond, Max: 2 * time.Millisecond}
	transient, permanent := errors.New("transient"), errors.New("permanent")
	classify := func(err error) Verdict {
		if err == permanent {
			return Stop
		}
		return Retry
	}
	calls, retries := 0, 0
	n, canceled, err := Do(context.Background(), p, func(context.Context, int) error {
		calls++
		return transient
	}, classify, nil, func(Attempt) { retries++ })
	if n != 3 || calls != 3 || retries != 2 || canceled || err != transient {
		t.Fatalf("all transient: n=%d calls=%d retries=%d canceled=%v err=%v", n, calls, retries, canceled, err)
	}
	calls = 0
	n, _, err = Do(context.Background(), p, func(_ context.Context, a int) error {
		calls++
		if a == 1 {
			return transient
		}
		return nil
	}, classify, nil, nil)
	if n != 2 || err != nil {
		t.Fatalf("second try succeeds: n=%d err=%v", n, err)
	}
	n, _, err = Do(context.Background(), p, func(context.Context, int) error { return permanent }, classify, nil, nil)
	if n != 1 || err != permanent {
		t.Fatalf("permanent: n=%d err=%v", n, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	long := Policy{Attempts: 3, Base: time.Hour, Max: time.Hour}
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	start := time.Now()
	_, canceled, err = Do(ctx, long, func(context.Context, int) error { return transient }, classify, nil, nil)
	if !canceled || err != transient || time.Since(start) > 10*time.Second {
		t.Fatalf("canceled while waiting: canceled=%v err=%v after %v", canceled, err, time.Since(start))
	}
}

func TestTransient(t *testing.T) {
	for _, c := range []struct {
		err       error
		transient bool
		ok        bool
	}{
		{context.Canceled, false, true},
		{context.DeadlineExceeded, true, true},
		{io.ErrUnexpectedEOF, true, true},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true, true},
		{&net.DNSError{Err: "no such host", IsNotFound: true}, false, true},
		{&net.DNSError{Err: "timeout", IsTimeout: true}, true, true},
		{errors.New("something else"), false, false},
	} {
		if tr, ok := Transient(c.err); tr != c.transient || ok != c.ok {
			t.Errorf("%v: transient=%v ok=%v, want %v %v", c.err, tr, ok, c.transient, c.ok)
		}
	}
	for code, want := range map[int]bool{500: true, 503: true, 429: true, 408: true, 404: false, 403: false, 200: false} {
		if TransientStatus(code) != want {
			t.Errorf("status %d: want %v", code, want)
		}
	}
}

func TestReadBody(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 100)
	if b, err := ReadBody(bytes.NewReader(data), 100, 100); err != nil || len(b) != 100 {
		t.Fatalf("declared, at the limit: %d %v", len(b), err)
	}
	if b, err := ReadBody(bytes.NewReader(data), -1, 100); err != nil || len(b) != 100 {
		t.Fatalf("undeclared, at the limit: %d %v", len(b), err)
	}
	var tl *TooLargeError
	if _, err := ReadBody(bytes.NewReader(data), 101, 100); !errors.As(err, &tl) || tl.Size != 101 {
		t.Fatalf("declared too large: %v", err)
	}
	if _, err := ReadBody(bytes.NewReader(data), -1, 99); !errors.As(err, &tl) || tl.Size != -1 {
		t.Fatalf("streamed too large: %v", err)
	}
	if _, err := ReadBody(bytes.NewReader(data[:50]), 100, 100); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short body: %v", err)
	}
}

func TestStall(t *testing.T) {
	fired := make(chan struct{})
	var once sync.Once
	s := NewStall(500*time.Millisecond, func() { once.Do(func() { close(fired) }) })
	pr, pw := io.Pipe()
	r := s.Reader(pr)
	go func() {
		for range 6 { // bytes every 20 ms: never stalled (500 ms of slack for a loaded machine)
			pw.Write([]byte("x"))
			time.Sleep(20 * time.Millisecond)
		}
	}()
	buf := make([]byte, 1)
	for range 6 {
		r.Read(buf)
	}
	select {
	case <-fired:
		t.Fatal("stalled while bytes kept arriving")
	default:
	}
	select {
	case <-fired: // nothing for 500 ms now
	case <-time.After(5 * time.Second):
		t.Fatal("no stall after the bytes stopped")
	}
	s.Stop()
}
