package relay

import (
	"encoding/binary"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The relay under a fake kernel: a SOCK_SEQPACKET pair stands in for /dev/fuse, and the
// workers are this test binary re-executed (TestMain) as a trivial FUSE server that answers
// every request with its unique — except opcode opHang, which the first worker never answers
// (it is killed holding it).

const (
	opHang   = 1000
	workerFD = 3
)

func TestMain(m *testing.M) {
	if gen := os.Getenv("RELAY_TEST_WORKER"); gen == "fail" {
		os.Exit(1) // a broken upgrade
	} else if gen != "" {
		serveTestWorker(gen)
		return
	}
	os.Exit(m.Run())
}

// serveTestWorker answers requests on fd 3: out header (len, error 0, unique) + "gen:<gen>".
func serveTestWorker(gen string) {
	buf := make([]byte, msgMax)
	for {
		n, err := unix.Read(workerFD, buf)
		if err != nil || n == 0 {
			os.Exit(0)
		}
		op := binary.LittleEndian.Uint32(buf[4:])
		unique := binary.LittleEndian.Uint64(buf[8:])
		if op == opHang && gen == "1" {
			continue
		}
		payload := []byte("gen:" + gen)
		out := make([]byte, outHeaderSize+len(payload))
		binary.LittleEndian.PutUint32(out[0:], uint32(len(out)))
		binary.LittleEndian.PutUint64(out[8:], unique)
		copy(out[outHeaderSize:], payload)
		unix.Write(workerFD, out)
	}
}

type fakeKernel struct {
	t   *testing.T
	end *os.File // the kernel's end
}

func (k *fakeKernel) send(op uint32, unique uint64) {
	msg := make([]byte, inHeaderSize)
	binary.LittleEndian.PutUint32(msg[0:], inHeaderSize)
	binary.LittleEndian.PutUint32(msg[4:], op)
	binary.LittleEndian.PutUint64(msg[8:], unique)
	if _, err := k.end.Write(msg); err != nil {
		k.t.Fatal(err)
	}
}

// recv returns the next reply's unique and payload.
func (k *fakeKernel) recv() (uint64, string) {
	buf := make([]byte, msgMax)
	k.end.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := k.end.Read(buf)
	if err != nil {
		k.t.Fatalf("no reply: %v", err)
	}
	return binary.LittleEndian.Uint64(buf[8:]), string(buf[outHeaderSize:n])
}

// newTestRelay runs a relay under a fake kernel whose workers are this binary re-executed,
// the nth one as generation n (or, while fail is set, one that exits at once); the first has
// answered INIT when it returns.
func newTestRelay(t *testing.T, fail *atomic.Bool) (*Relay, *fakeKernel, <-chan error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	dev := os.NewFile(uintptr(fds[0]), "fake-dev-fuse")
	k := &fakeKernel{t: t, end: os.NewFile(uintptr(fds[1]), "kernel")}
	self, _ := os.Executable()
	var gen atomic.Int32
	r := New(dev, slog.New(slog.DiscardHandler), func(sock *os.File) (*exec.Cmd, error) {
		cmd := exec.Command(self)
		g := "fail"
		if fail == nil || !fail.Load() {
			g = strconv.Itoa(int(gen.Add(1)))
		}
		cmd.Env = append(os.Environ(), "RELAY_TEST_WORKER="+g)
		cmd.ExtraFiles = []*os.File{sock}
		return cmd, cmd.Start()
	})
	done := make(chan error, 1)
	go func() { done <- r.Run() }()
	k.send(opInit, 1)
	if u, p := k.recv(); u != 1 || p != "gen:1" {
		t.Fatalf("INIT answered %d %q", u, p)
	}
	return r, k, done
}

func TestRelayRestartAndCrash(t *testing.T) {
	r, k, done := newTestRelay(t, nil)
	// A request the worker holds; then it dies: the next worker gets it resent.
	k.send(opHang, 3)
	time.Sleep(100 * time.Millisecond)
	pid := r.CurrentPID()
	unix.Kill(pid, unix.SIGKILL)
	if u, p := k.recv(); u != 3 || p != "gen:2" {
		t.Fatalf("after the crash: reply %d %q, want 3 from the second worker", u, p)
	}
	// A graceful restart: requests before and after are all answered, none twice.
	for i := uint64(5); i < 25; i += 2 {
		k.send(15, i)
	}
	if err := r.Restart(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	for i := uint64(25); i < 45; i += 2 {
		k.send(15, i)
	}
	seen := map[uint64]bool{}
	for range 20 {
		u, _ := k.recv()
		if seen[u] {
			t.Fatalf("request %d answered twice", u)
		}
		seen[u] = true
	}
	if r.CurrentPID() == pid {
		t.Fatal("no new serving process")
	}
	k.end.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not end when the connection closed")
	}
	r.Stop()
}

// A new worker that fails leaves the old one serving (Restart says so); Stop ends the worker.
func TestRelayFailedRestartAndStop(t *testing.T) {
	var fail atomic.Bool
	r, k, _ := newTestRelay(t, &fail)
	pid := r.CurrentPID()
	fail.Store(true)
	if err := r.Restart(); err == nil || !strings.Contains(err.Error(), "the old one keeps serving") {
		t.Fatalf("restart to a failing worker: %v, want 'the old one keeps serving'", err)
	}
	if r.CurrentPID() != pid {
		t.Fatalf("the serving process changed (%d → %d) though the new one failed", pid, r.CurrentPID())
	}
	k.send(15, 7)
	if u, p := k.recv(); u != 7 || p != "gen:1" {
		t.Fatalf("after the failed restart: reply %d %q, want 7 from the first worker", u, p)
	}
	r.Stop()
	if err := unix.Kill(pid, 0); err == nil {
		t.Fatalf("worker %d still there after Stop", pid)
	}
	k.end.Close()
}
