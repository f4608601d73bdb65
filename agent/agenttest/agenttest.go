// Package agenttest is the agent's test environment on real components: a basefs daemon (the
// binary built from ./cmd/basefs) mounted over an empty local state with a dir:// origin,
// real libvirtd (TCG), and the tiny test guest of scripts/build-test-guest.sh. Tests that
// need a missing capability skip through testenv (a failure under BASEFS_TEST_NO_SKIP=1).
package agenttest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/agent"
	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore/child"
	"github.com/basefs/basefs/chunkstore/glance/glancetest"
	"github.com/basefs/basefs/chunkstore/s3/s3test"
	"github.com/basefs/basefs/chunkstore/testenv"
	"github.com/basefs/basefs/chunkstore/testenv/daemontest"
	"github.com/basefs/basefs/daemon/control"
	"github.com/basefs/basefs/fs/names"
)

// Connect is the libvirt URI the tests use.
const Connect = "qemu:///system"

// VirtType is the domain type the tests boot with: $BASEFS_VIRT_TYPE, else qemu (TCG; these
// hosts cannot run guests under their KVM).
func VirtType() string {
	if v := os.Getenv("BASEFS_VIRT_TYPE"); v != "" {
		return v
	}
	return "qemu"
}

var (
	buildOnce sync.Once
	buildDir  string
	basefsBin string
	buildErr  error
)

// Main runs a package's tests and removes the binaries built for them.
func Main(m *testing.M) {
	code := m.Run()
	glancetest.Stop()
	s3test.Stop()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// RepoRoot returns the module's root directory (where go.mod is).
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// Basefs returns the path of the basefs binary, built once per test process.
func Basefs(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "basefs-agenttest-bin")
		if buildErr != nil {
			return
		}
		basefsBin = filepath.Join(buildDir, "basefs")
		cmd := exec.Command("go", "build", "-o", basefsBin, "./cmd/basefs")
		cmd.Dir = RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/basefs: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return basefsBin
}

// Env is one test's world: a running daemon whose mount is Mount, an origin to import images
// into, an instances directory, and the test guest's kernel and initrd.
type Env struct {
	T         testing.TB
	Dir       string // everything lives here (mode 0755: qemu runs as another user)
	Origin    string // the origin's state directory (served as dir://Origin)
	State     string // the daemon's local state, empty at start
	Mount     string
	Instances string
	Kernel    string
	Initrd    string
	Agent     *agent.Agent

	daemonArgs []string
	command    func(flags []string, mnt string) *exec.Cmd // how the daemon is started (nil: Basefs(t) mount)
	daemon     *daemontest.Daemon
	mu         sync.Mutex
	ids        map[string]bool
}

// Need skips t unless the host can run the agent for real: root, FUSE, qemu, a libvirtd
// answering on Connect, and the test guest (built if needed).
func Need(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedFUSE(t)
	testenv.NeedBinary(t, "qemu-img", "qemu-system-x86_64", "virsh")
	if out, err := exec.Command("virsh", "-c", Connect, "version").CombinedOutput(); err != nil {
		testenv.Skip(t, fmt.Sprintf("libvirtd does not answer on %s (scripts/setup-host.sh starts it): %v: %s", Connect, err, bytes.TrimSpace(out)))
	}
	// Without udev /dev/kvm is root's alone: libvirtd then finds its qemu capabilities stale
	// on every lookup ("KVM was enabled when probing … but it is not available now") and
	// re-probes qemu each time, so every define takes ~30 s here.
	if fi, err := os.Stat("/dev/kvm"); err == nil {
		g, gerr := user.LookupGroup("kvm")
		st, _ := fi.Sys().(*syscall.Stat_t)
		if gerr == nil && st != nil && (fi.Mode().Perm()&0o060 != 0o060 || fmt.Sprint(st.Gid) != g.Gid) {
			t.Logf("warning: /dev/kvm is %v, group %d: libvirtd re-probes qemu on every domain definition (~30 s each); "+
				"make it as udev would: chgrp kvm /dev/kvm && chmod 0660 /dev/kvm", fi.Mode().Perm(), st.Gid)
		}
	}
}

// GuestDir builds the test guest if needed and returns its directory.
func GuestDir(t testing.TB) string {
	t.Helper()
	root := RepoRoot(t)
	dir := filepath.Join(root, ".cache", "test-guest")
	cmd := exec.Command(filepath.Join(root, "scripts", "build-test-guest.sh"), dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		testenv.Skip(t, fmt.Sprintf("cannot build the test guest (scripts/build-test-guest.sh): %v\n%s", err, out))
	}
	return dir
}

// New makes an Env and starts its daemon; everything is torn down when t ends (instances
// spawned through Track first).
func New(t testing.TB) *Env {
	t.Helper()
	return NewWith(t)
}

// NewWith is New with extra `basefs mount` flags for the daemon (the cache manager's, say).
// The daemon always scans the Env's instances directory for images in use.
func NewWith(t testing.TB, daemonArgs ...string) *Env {
	t.Helper()
	return NewWithCommand(t, nil, daemonArgs...)
}

// NewWithCommand is NewWith with the daemon started by command, given the mount's flags and
// mount point (a packaged binary, or a systemd unit's ExecStart line, say); nil: Basefs(t) mount.
func NewWithCommand(t testing.TB, command func(flags []string, mnt string) *exec.Cmd, daemonArgs ...string) *Env {
	t.Helper()
	Need(t)
	guest := GuestDir(t)
	Basefs(t) // build before the clock of any test starts
	dir, err := os.MkdirTemp("", "basefs-agent-test")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	e := &Env{
		T: t, Dir: dir,
		Origin:     filepath.Join(dir, "origin"),
		State:      filepath.Join(dir, "state"),
		Mount:      filepath.Join(dir, "instances", "_base"),
		Instances:  filepath.Join(dir, "instances"),
		Kernel:     filepath.Join(dir, "vmlinuz"),
		Initrd:     filepath.Join(dir, "initrd.gz"),
		ids:        map[string]bool{},
		daemonArgs: daemonArgs,
		command:    command,
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{e.Origin, e.State, e.Mount} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, filepath.Join(guest, "vmlinuz"), e.Kernel)
	copyFile(t, filepath.Join(guest, "initrd.gz"), e.Initrd)
	e.Agent = agent.New(agent.Config{InstancesPath: e.Instances, KernelDirs: []string{dir}, Connect: Connect})
	e.startDaemon()
	t.Cleanup(e.cleanup)
	return e
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (e *Env) startDaemon() {
	t := e.T
	t.Helper()
	logf, err := os.Create(filepath.Join(e.Dir, "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	flags := append([]string{"--state", e.State, "--origin", "dir://" + e.Origin, "--instances-path", e.Instances}, e.daemonArgs...)
	cmd := exec.Command(Basefs(t), append(append([]string{"mount"}, flags...), e.Mount)...)
	if e.command != nil {
		cmd = e.command(flags, e.Mount)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	d, err := daemontest.Start(context.Background(), cmd, e.Mount, 20*time.Second)
	logf.Close()
	if err != nil {
		t.Fatalf("%v: %s", err, e.DaemonLog())
	}
	e.daemon = d
}

// SupervisorPID returns the pid of the supervisor of the basefs mount at mnt (its root's
// supervisor attribute).
func SupervisorPID(t testing.TB, mnt string) int {
	t.Helper()
	pid := supervisorPID(mnt)
	if pid <= 0 {
		t.Fatalf("%s: no supervisor pid", mnt)
	}
	return pid
}

func supervisorPID(mnt string) int {
	buf := make([]byte, 32)
	n, err := unix.Getxattr(mnt, names.SupervisorXattr, buf)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(string(buf[:n]))
	return pid
}

// DaemonLog returns the daemon's output so far.
func (e *Env) DaemonLog() string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, "daemon.log"))
	return string(b)
}

func (e *Env) cleanup() {
	e.mu.Lock()
	ids := e.ids
	e.mu.Unlock()
	for id := range ids {
		if _, err := e.Agent.Terminate(context.Background(), id); err != nil {
			e.T.Errorf("cleanup: terminate %s: %v", id, err)
		}
	}
	// A supervisor the serving process started (the first one was killed) unmounts too.
	if pid := supervisorPID(e.Mount); pid > 0 && (e.daemon == nil || pid != e.daemon.Pid) {
		child.StopPid(pid, 15*time.Second)
	}
	if e.daemon != nil {
		e.daemon.Stop(15 * time.Second)
	}
	unix.Unmount(e.Mount, unix.MNT_DETACH) // only if the daemon could not
}

// Track registers instance id for termination when the test ends.
func (e *Env) Track(id string) {
	e.mu.Lock()
	e.ids[id] = true
	e.mu.Unlock()
}

// ID returns an instance ID unique to this test process (tests of several checkouts may share
// one libvirtd) and tracks it.
func (e *Env) ID(name string) string {
	id := fmt.Sprintf("t%d-%s", os.Getpid(), name)
	e.Track(id)
	return id
}

// Image is a test image imported into the origin.
type Image struct {
	Digest string
	Size   int64
	SHA256 string // of its raw bytes
	Raw    string // the raw file
}

// Status returns the daemon's status (counters per origin included).
func (e *Env) Status() *control.Status {
	e.T.Helper()
	st, err := control.NewClient(control.SocketFromState(e.State)).Status(context.Background())
	if err != nil {
		e.T.Fatal(err)
	}
	return st
}

// Import writes a raw image of dataBytes pseudo-random bytes (from seed) followed by
// zeroBytes zeros and imports it into the origin with `basefs import`.
func (e *Env) Import(seed uint64, dataBytes, zeroBytes int64) Image {
	t := e.T
	t.Helper()
	raw := filepath.Join(e.Dir, fmt.Sprintf("image-%d.raw", seed))
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	w := bufio.NewWriter(io.MultiWriter(f, h))
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]byte, 8)
	for n := int64(0); n < dataBytes; n += 8 {
		v := r.Uint64()
		for i := range buf {
			buf[i] = byte(v >> (8 * i))
		}
		w.Write(buf[:min(8, dataBytes-n)])
	}
	w.Write(make([]byte, zeroBytes))
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := exec.Command(Basefs(t), "import", "--state", e.Origin, raw).Output()
	if err != nil {
		t.Fatalf("basefs import: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return Image{Digest: lines[len(lines)-1], Size: dataBytes + zeroBytes, SHA256: hex.EncodeToString(h.Sum(nil)), Raw: raw}
}

// Stats returns the daemon's counters.
func (e *Env) Stats() cache.StatsSnapshot {
	e.T.Helper()
	st, err := control.NewClient(control.SocketFromState(e.State)).Status(context.Background())
	if err != nil {
		e.T.Fatal(err)
	}
	return st.Stats
}

// Cmdline returns the guest's kernel command line: read size bytes of its disk, write the
// marker at markerOffset.
func Cmdline(size, markerOffset int64, marker string) string {
	return fmt.Sprintf("console=ttyS0 quiet panic=-1 basefs.readsize=%d basefs.markeroffset=%d basefs.marker=%s", size, markerOffset, marker)
}

// SpawnRequest returns a request to boot the test guest on img with a disk of diskSize.
func (e *Env) SpawnRequest(id string, img Image, diskSize, markerOffset int64, marker string) agent.SpawnRequest {
	return agent.SpawnRequest{
		ID: id, Image: img.Digest, DiskSize: diskSize, VirtType: VirtType(), Memory: 256 * agent.MiB,
		Kernel: e.Kernel, Initrd: e.Initrd, Cmdline: Cmdline(img.Size, markerOffset, marker),
		Base: e.Mount,
	}
}

// WaitConsole waits until the console log at path has a line starting with prefix and
// returns that line and when it was seen. A line starting with "BASEFS-GUEST error" fails t.
func WaitConsole(t testing.TB, path, prefix string, timeout time.Duration) (string, time.Time) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		lines := strings.Split(strings.ReplaceAll(string(b), "\r", ""), "\n")
		for _, l := range lines[:len(lines)-1] { // complete lines only
			if strings.HasPrefix(l, "BASEFS-GUEST error") {
				t.Fatalf("guest: %s\nconsole:\n%s", l, b)
			}
			if strings.HasPrefix(l, prefix) {
				return l, time.Now()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no console line %q in %s within %s; console:\n%s", prefix, path, timeout, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ReadAt reads n bytes at off of a qcow2 disk (through its backing chain), as the guest sees
// them.
func ReadAt(t testing.TB, disk string, off, n int64) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "flat.raw")
	if b, err := exec.Command("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", disk, out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert %s: %v: %s", disk, err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off); err != nil {
		t.Fatal(err)
	}
	return buf
}

// FileSHA256 returns the hex SHA-256 of a file's bytes.
func FileSHA256(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// DomainExists reports whether libvirt has a domain of that name (through virsh, so it does
// not share the agent's code).
func DomainExists(t testing.TB, name string) bool {
	t.Helper()
	err := exec.Command("virsh", "-q", "-c", Connect, "domstate", name).Run()
	return err == nil
}

// NoLeftovers fails t if instance id has a domain or a directory.
func (e *Env) NoLeftovers(t testing.TB, id string) {
	t.Helper()
	if DomainExists(t, agent.DomainName(id)) {
		t.Errorf("leftover: domain %s is defined", agent.DomainName(id))
	}
	if _, err := os.Lstat(filepath.Join(e.Instances, id)); err == nil {
		t.Errorf("leftover: instance directory %s exists", filepath.Join(e.Instances, id))
	}
}
