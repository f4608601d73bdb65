package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore/testenv"
	"github.com/basefs/basefs/daemon/control"
	"github.com/basefs/basefs/fs/names"
)

// restartRig is a control socket served by a Server whose supervisor's restart desk runs
// restart; status stands in for the new serving process's status.
func restartRig(t *testing.T, restart func() error, owner uint32) (sock string) {
	t.Helper()
	dir := t.TempDir()
	sock = control.SocketFromState(dir)
	l, err := Listen(sock, owner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	newProcess := func(context.Context) (*control.Status, error) { return &control.Status{PID: 4242, Version: "new"}, nil }
	desk, err := openDesk(RestartsFromState(dir), restart, newProcess, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(desk.Close)
	t.Cleanup((&Server{Owner: owner, Restarts: RestartsFromState(dir)}).Serve(l))
	return sock
}

// TestRestartAnswered: a restart asked on the control socket reaches the supervisor's desk,
// which answers on the client's own connection once the handover is done: the new serving
// process, after the restart ran — once, however the request got there.
func TestRestartAnswered(t *testing.T) {
	testenv.NeedRoot(t)
	var ran atomic.Int32
	sock := restartRig(t, func() error { ran.Add(1); time.Sleep(200 * time.Millisecond); return nil }, 0)
	r, err := control.NewClient(sock).Restart(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ran.Load() != 1 || r.PID != 4242 || r.Version != "new" || r.OldPID != os.Getpid() || r.Seconds < 0.2 {
		t.Fatalf("restart ran %d times, answered %+v; want once, the new process 4242 (new), old %d, ≥ 0.2 s", ran.Load(), r, os.Getpid())
	}
}

// TestRestartFailureAnsweredAtOnce: a handover that fails is answered with its error as soon
// as the supervisor knows it, not after a timeout.
func TestRestartFailureAnsweredAtOnce(t *testing.T) {
	testenv.NeedRoot(t)
	sock := restartRig(t, func() error { return errors.New("serving process 77 exited before it was ready") }, 0)
	start := time.Now()
	_, err := control.NewClient(sock).Restart(context.Background())
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "supervisor's log") {
		t.Fatalf("restart: %v; want the handover's error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the failure was answered after %s", d)
	}
}

// TestRestartRootOnly: the mount's owner may ask for status, not for a restart (only root
// could signal the supervisor); a daemon without a supervisor says so; one whose supervisor
// has no desk (an older basefs) answers ErrUnsupported, so the CLI can fall back to SIGHUP.
func TestRestartRootOnly(t *testing.T) {
	owner := testenv.NewUser(t)
	testenv.NeedBinary(t, "curl")
	var ran atomic.Bool
	sock := restartRig(t, func() error { ran.Store(true); return nil }, owner.Uid)
	testenv.Reach(t, filepath.Dir(sock))
	out, err := owner.Command(nil, "curl", "-sS", "--unix-socket", sock, "-X", "POST", "http://basefs/v1/restart").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "only root may restart") || ran.Load() {
		t.Fatalf("restart by the owner (uid %d): %v %s (restarted: %v); want refused", owner.Uid, err, out, ran.Load())
	}

	dir := t.TempDir()
	l, err := net.Listen("unix", control.SocketFromState(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer (&Server{}).Serve(l)()
	if _, err := control.NewClient(control.SocketFromState(dir)).Restart(context.Background()); err == nil || !strings.Contains(err.Error(), "no supervisor") {
		t.Fatalf("restart of a process without a supervisor: %v", err)
	}
	l2, err := net.Listen("unix", filepath.Join(dir, "old.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer (&Server{Restarts: filepath.Join(dir, "no-desk.sock")}).Serve(l2)()
	if _, err := control.NewClient(filepath.Join(dir, "old.sock")).Restart(context.Background()); !errors.Is(err, control.ErrUnsupported) {
		t.Fatalf("restart with a supervisor that has no desk: %v; want ErrUnsupported", err)
	}
}

// The leaf names the root's attribute itself (it may not import fs/names): the same name.
func TestXattrNamesAgree(t *testing.T) {
	if control.Xattr != names.ControlXattr {
		t.Fatalf("control.Xattr %q, fs/names.ControlXattr %q", control.Xattr, names.ControlXattr)
	}
}
