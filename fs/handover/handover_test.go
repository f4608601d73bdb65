package handover

// The handover's own behaviour on a real FUSE mount with real processes: the test binary is
// re-executed as the serving process (role serve: a tiny go-fuse file system whose root
// answers the xattrs user.pid and user.supervisor), as a process that fails at once (role
// fail), and as a supervisor (role supervise: started on the mount's connection; role adopt:
// the supervisor a serving process starts when its own died). The supervisor under test runs
// in the test process itself where the test needs its methods (Restart, Stop).

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/chunkstore/child"
	"github.com/basefs/basefs/chunkstore/testenv"
)

const (
	roleEnv = "BASEFS_HANDOVER_TEST_ROLE"
	logEnv  = "BASEFS_HANDOVER_TEST_LOG" // where the re-executed processes write their logs
)

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "":
		os.Exit(m.Run())
	case "serve":
		roleServe()
	case "fail":
		fmt.Fprintln(os.Stderr, "failing at once, as a broken upgrade would")
		os.Exit(1)
	case "supervise":
		dev := os.NewFile(3, "/dev/fuse")
		init, err := ReadInit(dev)
		if err != nil {
			fatal(err)
		}
		roleSupervise(NewSupervisor(dev, init, childLog(), startRole("serve", dev)), nil)
	case "adopt":
		dev, link := os.NewFile(3, "/dev/fuse"), os.NewFile(4, "link")
		roleSupervise(NewSupervisor(dev, nil, childLog(), startRole("serve", dev)), link)
	}
	fatal(fmt.Errorf("unknown role %q", os.Getenv(roleEnv)))
}

func childLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, nil)).With("role", os.Getenv(roleEnv), "pid", os.Getpid())
}

func fatal(err error) {
	childLog().Error("exiting", "err", err)
	os.Exit(2)
}

// startRole starts the test binary in role with the link as fd 3 and the connection dev as
// fd 4 (what a supervisor's start function and a serving process's respawn do).
func startRole(role string, dev *os.File) func(link *os.File) (*exec.Cmd, error) {
	return func(link *os.File) (*exec.Cmd, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), roleEnv+"="+role)
		cmd.ExtraFiles = []*os.File{link, dev}
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if f, err := os.OpenFile(os.Getenv(logEnv), os.O_WRONLY|os.O_APPEND, 0); err == nil {
			cmd.Stdout, cmd.Stderr = f, f
			defer f.Close()
		}
		if role == "adopt" {
			// The adopting supervisor gets the connection as fd 3 and the link as fd 4.
			cmd.ExtraFiles = []*os.File{dev, link}
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // it outlives the serving process
		}
		return cmd, cmd.Start()
	}
}

// roleSupervise runs sv (adopting the process at the other end of link, if given) and
// restarts its serving process on SIGHUP, as basefs mount does.
func roleSupervise(sv *Supervisor, link *os.File) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if err := sv.Restart(); err != nil {
				childLog().Error("restart failed", "err", err)
			}
		}
	}()
	if err := sv.Run(link); err != nil {
		fatal(err)
	}
	os.Exit(0)
}

// roleServe is a serving process: it joins its supervisor, attaches, serves and exits when
// drained or when the connection ends.
func roleServe() {
	// As the daemon does (daemon/serve.go): without it a request the kernel is copying into
	// this process when the test kills it fails with EIO instead of being resent.
	if err := LockMemory(); err != nil {
		fatal(err)
	}
	dev := os.NewFile(4, "/dev/fuse")
	h, err := Join(3, 4, childLog(), startRole("adopt", dev))
	if err != nil {
		fatal(err)
	}
	srv, err := h.Attach(func(mp string) (*fuse.Server, error) {
		return fuse.NewServer(gofs.NewNodeFS(&root{h: h}, &gofs.Options{}), mp, &fuse.MountOptions{MaxWrite: 1 << 20, DisableSplice: true})
	})
	if err != nil {
		fatal(err)
	}
	go func() {
		srv.Serve()
		os.Exit(0) // the connection ended
	}()
	h.Run()
	os.Exit(0) // drained: what it held is resent to the next one
}

// root answers user.pid (the serving process) and user.supervisor (its supervisor's pid).
type root struct {
	gofs.Inode
	h *Server
}

var _ gofs.NodeGetxattrer = (*root)(nil)

func (r *root) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	var v string
	switch attr {
	case "user.pid":
		v = strconv.Itoa(os.Getpid())
	case "user.supervisor":
		v = strconv.Itoa(r.h.SupervisorPID())
	default:
		return 0, syscall.ENODATA
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// mounted is a FUSE mount of the test, its connection not yet read, and the log file of the
// processes the test re-executes.
type mounted struct {
	t   *testing.T
	mnt string
	dev *os.File
	log string
}

// mount mounts a new FUSE connection (Mount) on a kernel that can resend; it is detached and
// every process the test started is gone when the test ends.
func mount(t *testing.T) *mounted {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedFUSE(t)
	dir := t.TempDir()
	m := &mounted{t: t, mnt: filepath.Join(dir, "mnt"), log: filepath.Join(dir, "children.log")}
	os.Mkdir(m.mnt, 0o755)
	if err := os.WriteFile(m.log, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(logEnv, m.log)
	dev, err := Mount(m.mnt)
	if err != nil {
		t.Fatal(err)
	}
	m.dev = dev
	t.Cleanup(func() {
		unix.Unmount(m.mnt, unix.MNT_DETACH)
		dev.Close()
		if t.Failed() {
			b, _ := os.ReadFile(m.log)
			t.Logf("the re-executed processes' log:\n%s", b)
		}
	})
	if err := Probe(dev); err != nil {
		testenv.Skip(t, fmt.Sprintf("the handover needs FUSE_NOTIFY_RESEND: %v", err))
	}
	return m
}

// xattr reads a pid attribute of the mount's root: it returns when a serving process answers.
func (m *mounted) xattr(name string) int {
	m.t.Helper()
	type result struct {
		pid int
		err error
	}
	got := make(chan result, 1)
	go func() {
		buf := make([]byte, 32)
		n, err := unix.Getxattr(m.mnt, name, buf)
		if err != nil {
			got <- result{0, err}
			return
		}
		pid, err := strconv.Atoi(string(buf[:n]))
		got <- result{pid, err}
	}()
	select {
	case r := <-got:
		if r.err != nil {
			m.t.Fatalf("getxattr %s %s: %v", m.mnt, name, r.err)
		}
		return r.pid
	case <-time.After(30 * time.Second):
		m.t.Fatalf("getxattr %s %s: no answer within 30 s", m.mnt, name)
		return 0
	}
}

// supervise starts a supervisor in the test process on m's connection, its serving
// processes started in role (which the test may change: setRole); it returns the supervisor
// and a channel that gets Run's result.
func (m *mounted) supervise(role string) (sv *Supervisor, ran <-chan error, setRole func(string)) {
	m.t.Helper()
	init, err := ReadInit(m.dev)
	if err != nil {
		m.t.Fatal(err)
	}
	var mu sync.Mutex
	setRole = func(r string) {
		mu.Lock()
		role = r
		mu.Unlock()
	}
	sv = NewSupervisor(m.dev, init, slog.New(slog.NewTextHandler(io.Discard, nil)), func(link *os.File) (*exec.Cmd, error) {
		mu.Lock()
		r := role
		mu.Unlock()
		return startRole(r, m.dev)(link)
	})
	done := make(chan error, 1)
	go func() { done <- sv.Run(nil) }()
	m.t.Cleanup(func() {
		unix.Unmount(m.mnt, unix.MNT_DETACH)
		sv.Stop()
	})
	return sv, done, setRole
}

// The first serving process answers the kernel's INIT and serves; Restart hands the
// connection to a new one and the old one exits; after unmount, Run returns and Stop leaves
// no serving process.
func TestSuperviseRestartUnmount(t *testing.T) {
	m := mount(t)
	sv, ran, _ := m.supervise("serve")
	first := m.xattr("user.pid")
	if first == os.Getpid() || first <= 0 {
		t.Fatalf("served by pid %d, want a serving process of its own", first)
	}
	if sup := m.xattr("user.supervisor"); sup != os.Getpid() {
		t.Fatalf("the serving process names supervisor %d, want the test process %d", sup, os.Getpid())
	}
	t0 := time.Now()
	if err := sv.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	t.Logf("restart took %s", time.Since(t0).Round(time.Millisecond))
	second := m.xattr("user.pid")
	if second == first {
		t.Fatalf("still served by %d after Restart", first)
	}
	if !child.WaitExit(first, 5*time.Second) {
		t.Fatalf("the replaced serving process %d did not exit", first)
	}
	if err := unix.Unmount(m.mnt, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run after unmount: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after unmount")
	}
	sv.Stop()
	if !child.WaitExit(second, 5*time.Second) {
		t.Fatalf("serving process %d still there after unmount and Stop", second)
	}
	if err := sv.Restart(); err == nil || !strings.Contains(err.Error(), "no longer mounted") {
		t.Fatalf("Restart after unmount: %v, want 'no longer mounted'", err)
	}
}

// A serving process that dies is replaced at once on the same connection; a new process
// that fails on Restart leaves the old one serving.
func TestSuperviseRespawnAndFailedRestart(t *testing.T) {
	m := mount(t)
	sv, _, setRole := m.supervise("serve")
	first := m.xattr("user.pid")
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second := m.xattr("user.pid") // waits for the replacement: the mount was never gone
	if second == first {
		t.Fatalf("still answered by the killed process %d", first)
	}
	setRole("fail")
	err := sv.Restart()
	if err == nil || !strings.Contains(err.Error(), "the old one keeps serving") {
		t.Fatalf("Restart to a failing process: %v, want 'the old one keeps serving'", err)
	}
	if now := m.xattr("user.pid"); now != second {
		t.Fatalf("after a failed restart served by %d, want the old %d", now, second)
	}
	setRole("serve")
	if err := sv.Restart(); err != nil {
		t.Fatalf("Restart once the binary works again: %v", err)
	}
	if now := m.xattr("user.pid"); now == second {
		t.Fatal("the restart after a failed one did not replace the serving process")
	}
}

// When the supervisor dies, the serving process keeps serving and starts a supervisor that
// adopts it (Server.Run, Supervisor.Run with a link); that one restarts it on SIGHUP like the
// first, and ends when the file system is unmounted.
func TestSupervisorDiesServerAdopted(t *testing.T) {
	m := mount(t)
	sup := exec.Command(os.Args[0], "-test.run=^$")
	sup.Env = append(os.Environ(), roleEnv+"=supervise")
	sup.ExtraFiles = []*os.File{m.dev}
	logf, err := os.OpenFile(m.log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	sup.Stdout, sup.Stderr = logf, logf
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	first := child.Started(sup)
	t.Cleanup(func() { first.Stop(5 * time.Second) })
	served := m.xattr("user.pid")
	if got := m.xattr("user.supervisor"); got != first.Pid {
		t.Fatalf("supervisor %d, want %d", got, first.Pid)
	}
	first.Cmd.Process.Kill()
	<-first.Dead
	// The serving process notices at once and starts the adopting supervisor; the test
	// sees it only through the mount, so it asks until the answer changes.
	var adopted int
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if adopted = m.xattr("user.supervisor"); adopted != first.Pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no supervisor adopted the serving process within 20 s")
		}
	}
	t.Cleanup(func() { child.StopPid(adopted, 5*time.Second) })
	if now := m.xattr("user.pid"); now != served {
		t.Fatalf("the supervisor's death changed the serving process (%d → %d)", served, now)
	}
	// The serving process names its new supervisor as soon as it started it: a SIGHUP before
	// that one set up its handler would end it (Go's default). It logs once it has.
	for deadline := time.Now().Add(20 * time.Second); !m.logged(fmt.Sprintf("role=adopt pid=%d", adopted)); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the adopting supervisor %d did not start supervising within 20 s", adopted)
		}
	}
	if err := syscall.Kill(adopted, syscall.SIGHUP); err != nil {
		t.Fatalf("adopting supervisor %d: %v", adopted, err)
	}
	if !child.WaitExit(served, 20*time.Second) {
		t.Fatal("the adopting supervisor's restart did not retire the serving process it adopted")
	}
	next := m.xattr("user.pid")
	if next == served {
		t.Fatal("still served by the adopted process")
	}
	if got := m.xattr("user.supervisor"); got != adopted {
		t.Fatalf("the new serving process names supervisor %d, want the adopting one %d", got, adopted)
	}
	if err := unix.Unmount(m.mnt, 0); err != nil {
		t.Fatal(err)
	}
	if !child.WaitExit(adopted, 20*time.Second) || !child.WaitExit(next, 5*time.Second) {
		t.Fatal("the adopting supervisor or its serving process outlived the unmount")
	}
}

// logged reports whether a re-executed process logged a line containing what.
func (m *mounted) logged(what string) bool {
	b, _ := os.ReadFile(m.log)
	return strings.Contains(string(b), what)
}
