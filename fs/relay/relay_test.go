package relay

import (
	"encoding/binary"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
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
	if gen := os.Getenv("RELAY_TEST_WORKER"); gen != "" {
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

func TestRelayRestartAndCrash(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	dev := os.NewFile(uintptr(fds[0]), "fake-dev-fuse")
	k := &fakeKernel{t: t, end: os.NewFile(uintptr(fds[1]), "kernel")}
	self, _ := os.Executable()
	var gen atomic.Int32
	var workers []*exec.Cmd
	r := New(dev, slog.New(slog.DiscardHandler), func(sock *os.File) (*exec.Cmd, error) {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), "RELAY_TEST_WORKER="+strconv.Itoa(int(gen.Add(1))))
		cmd.ExtraFiles = []*os.File{sock}
		workers = append(workers, cmd)
		return cmd, cmd.Start()
	})
	done := make(chan error, 1)
	go func() { done <- r.Run() }()
	k.send(opInit, 1)
	if u, p := k.recv(); u != 1 || p != "gen:1" {
		t.Fatalf("INIT answered %d %q", u, p)
	}
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
