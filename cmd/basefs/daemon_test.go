package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/chunkstore/storetest"
	"github.com/basefs/basefs/chunkstore/testenv"
	"github.com/basefs/basefs/chunkstore/testenv/daemontest"
	"github.com/basefs/basefs/daemon/control"
)

// daemon is a `basefs mount` child process.
type daemon struct {
	t     *testing.T
	cmd   *exec.Cmd
	state string
	mnt   string
	log   *syncBuffer
	done  <-chan struct{}
	d     *daemontest.Daemon
}

func startDaemon(t *testing.T, state, mnt string, extra ...string) *daemon {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedFUSE(t)
	return startDaemonEnv(t, nil, state, mnt, extra...)
}

// startDaemonEnv is startDaemon with the daemon's environment given (nil: the test's; OS_*
// for Keystone); it returns once the daemon serves its mount (daemontest).
func startDaemonEnv(t *testing.T, env []string, state, mnt string, extra ...string) *daemon {
	t.Helper()
	return startDaemonBin(t, basefsBin, env, state, mnt, extra...)
}

// startDaemonBin is startDaemonEnv with the binary given (a copy an upgrade can replace).
func startDaemonBin(t *testing.T, bin string, env []string, state, mnt string, extra ...string) *daemon {
	t.Helper()
	os.MkdirAll(mnt, 0o755)
	args := append(append([]string{"mount", "--state", state}, extra...), mnt)
	log := &syncBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	dd, err := daemontest.Start(context.Background(), cmd, mnt, 20*time.Second)
	if err != nil {
		t.Fatalf("%v:\n%s", err, log)
	}
	d := &daemon{t: t, cmd: cmd, state: state, mnt: mnt, log: log, done: dd.Dead, d: dd}
	t.Cleanup(d.stop)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the daemon's log:\n%s", d.log)
		}
	})
	return d
}

// syncBuffer is a bytes.Buffer safe to read while the daemon writes its log into it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (d *daemon) stop() {
	if !d.d.Stop(10 * time.Second) {
		d.t.Errorf("daemon did not stop on SIGTERM:\n%s", d.log)
	}
}

// kill9 kills the whole daemon at once — every serving process it ran and the supervisor —
// as a power cut would (either one alone is survived: the other takes over).
func (d *daemon) kill9() {
	for _, m := range servingPID.FindAllStringSubmatch(d.log.String(), -1) {
		if pid, _ := strconv.Atoi(m[1]); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	d.cmd.Process.Kill()
	<-d.done
}

// servingPID finds the serving processes' pids in a daemon's log.
var servingPID = regexp.MustCompile(`msg=(?:serving|"serving the FUSE connection directly") pid=(\d+)`)

func (d *daemon) status() *control.Status {
	d.t.Helper()
	var st control.Status
	out := mustBasefs(d.t, "status", "--base", d.mnt, "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		d.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return &st
}

// makeImage writes a raw image of n bytes of incompressible data.
func makeImage(t *testing.T, dir string, n int, seed uint64) (string, [32]byte) {
	p := filepath.Join(dir, fmt.Sprintf("img-%d.raw", seed))
	data := storetest.Data(seed, n)
	os.WriteFile(p, data, 0o644)
	return p, sha256.Sum256(data)
}

func shaFile(t *testing.T, p string) [32]byte {
	t.Helper()
	s, err := sha256File(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDaemonHTTPOriginNginx: a published directory served by a real nginx is an origin.
func TestDaemonHTTPOriginNginx(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img", "nginx")
	dir := t.TempDir()
	img, want := makeImage(t, dir, 6<<20+4096, 1)
	digest := importMiB(t, filepath.Join(dir, "build"), img)
	pub := filepath.Join(dir, "pub")
	mustBasefs(t, "publish", "--state", filepath.Join(dir, "build"), "--to", "dir://"+pub, digest)
	os.Chmod(dir, 0o755) // nginx workers read the published tree
	port := freePort(t)
	nginx := filepath.Join(dir, "nginx")
	cmd := exec.Command("../../scripts/start-nginx.sh", pub, fmt.Sprint(port))
	cmd.Env = append(os.Environ(), "BASEFS_NGINX_DIR="+nginx)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("start-nginx.sh: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		c := exec.Command("../../scripts/start-nginx.sh", "--stop", fmt.Sprint(port))
		c.Env = cmd.Env
		c.Run()
	})
	d := startDaemon(t, filepath.Join(dir, "state"), filepath.Join(dir, "mnt"), "--origin", fmt.Sprintf("http://127.0.0.1:%d/", port))
	if got := shaFile(t, filepath.Join(d.mnt, digest)); got != want {
		t.Fatal("the image read through an nginx origin differs from the source")
	}
	st := d.status()
	if st.Stats.Origins[0].Fetches != 7 || st.Stats.ManifestFetches != 1 {
		t.Fatalf("status: %+v; want 7 chunk fetches and 1 manifest fetch from nginx", st.Stats)
	}
}

// readDirect reads n bytes at the start of p with O_DIRECT (the daemon answers, not the page cache).
func readDirect(p string, n int) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := alignedBuf(n)
	_, err = f.ReadAt(buf, 0)
	return buf, err
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestDaemonKill9MidFetch kills the daemon while fetches are in flight from a slow origin,
// restarts it, and checks that the state holds nothing partial and every read is right.
func TestDaemonKill9MidFetch(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	dir := t.TempDir()
	img, want := makeImage(t, dir, 24<<20, 2)
	origin := filepath.Join(dir, "origin")
	digest := lastLine(mustBasefs(t, "import", "--state", origin, img))
	// A slow origin (fault injection: the delay), serving the real published files.
	files := http.FileServer(http.Dir(origin))
	var slow sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/chunks/") {
			if _, ok := slow.Load("on"); ok {
				// Send half the object, then stall: the daemon is mid-write when it dies.
				w.Header().Set("Content-Length", "1048592")
				w.WriteHeader(200)
				w.Write(make([]byte, 512<<10))
				w.(http.Flusher).Flush()
				select { // until the daemon dies (its connection closes)
				case <-r.Context().Done():
				case <-time.After(30 * time.Second):
				}
				return
			}
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	state, mnt := filepath.Join(dir, "state"), filepath.Join(dir, "mnt")
	d := startDaemon(t, state, mnt, "--origin", srv.URL)
	if _, err := os.Stat(filepath.Join(mnt, digest)); err != nil {
		t.Fatal(err)
	}
	// Read the first 4 MiB (chunks arrive), then make the origin stall and start more reads.
	f, _ := os.Open(filepath.Join(mnt, digest))
	io.CopyN(io.Discard, f, 4<<20)
	f.Close()
	slow.Store("on", true)
	for i := range 4 {
		go func() {
			b := make([]byte, 4096)
			if f, err := os.Open(filepath.Join(mnt, digest)); err == nil {
				f.ReadAt(b, int64(8+i)<<20)
				f.Close()
			}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for d.status().Stats.FetchesInFlight == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no fetch in flight")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	d.kill9()
	slow.Delete("on")

	// Restart over the stale mount; nothing partial is in the state.
	d2 := startDaemon(t, state, mnt, "--origin", srv.URL)
	if ents, _ := os.ReadDir(filepath.Join(state, "tmp")); len(ents) != 0 {
		t.Fatalf("after restart tmp/ holds %d leftovers", len(ents))
	}
	out, errOut, code := basefs(t, "verify", "--state", state)
	if code != 0 {
		t.Fatalf("verify after kill -9: exit %d\n%s%s", code, out, errOut)
	}
	if got := shaFile(t, filepath.Join(d2.mnt, digest)); got != want {
		t.Fatal("reads after restart differ from the source")
	}
}

// TestDaemonStatusMetricsPublish: status and Prometheus metrics count what happened;
// publish makes a layout another daemon reads as a dir:// origin.
func TestDaemonStatusMetricsPublish(t *testing.T) {
	testenv.NeedBinary(t, "qemu-img")
	dir := t.TempDir()
	img, want := makeImage(t, dir, 3<<20, 3)
	digest := importMiB(t, filepath.Join(dir, "a"), img)
	port := freePort(t)
	d := startDaemon(t, filepath.Join(dir, "state"), filepath.Join(dir, "mnt"),
		"--origin", "dir://"+filepath.Join(dir, "a"), "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port))
	if got := shaFile(t, filepath.Join(d.mnt, digest)); got != want {
		t.Fatal("wrong bytes")
	}
	st := d.status()
	for deadline := time.Now().Add(5 * time.Second); st.Images[0].Present < 3 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond) // fetched chunks are written in the background
		st = d.status()
	}
	if len(st.Images) != 1 || st.Images[0].Present != 3 || st.Stats.Fetches() != 3 || st.Stats.BytesRead < 3<<20 {
		t.Fatalf("status after reading the image: %+v", st)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"basefs_origin_fetches_total{origin=\"dir://" + filepath.Join(dir, "a") + "\"} 3", "basefs_local_corrupt_total 0", "basefs_reads_total",
		`basefs_origin_fetch_seconds_count{origin="dir://` + filepath.Join(dir, "a") + `",outcome="ok"} 3`} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("metrics lack %q:\n%s", want, body)
		}
	}
	// After a handover to a new serving process, the latency histograms (FUSE requests by
	// operation, chunk requests by origin and outcome) are there, and every counter goes on
	// from where the old process left it: the manager's (nova's utime counted once), the
	// cache's and each origin's (3 fetches, not 0 — make run's table showed 0 here).
	before := d.status().Stats
	now := time.Now()
	if err := os.Chtimes(filepath.Join(d.mnt, digest), now, now); err != nil {
		t.Fatalf("utime: %v", err)
	}
	if _, stderr, code := basefs(t, "restart", d.mnt); code != 0 {
		t.Fatalf("basefs restart: %s", stderr)
	}
	if _, err := readDirect(filepath.Join(d.mnt, digest), 4096); err != nil {
		t.Fatalf("read after the restart: %v", err)
	}
	resp, err = http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	after := d.status().Stats
	if after.Fetches() != 3 || after.Origins[0].Bytes != before.Origins[0].Bytes || after.Reads <= before.Reads ||
		after.BytesRead <= before.BytesRead || after.FetchSeconds < before.FetchSeconds {
		t.Fatalf("counters after a handover do not go on from before it:\nbefore %+v\nafter  %+v", before, after)
	}
	for _, want := range []string{`basefs_fuse_request_seconds_count{op="read"}`, `basefs_fuse_request_seconds_bucket{op="open"`,
		`basefs_manager_total{what="images_removed"} 0`, `basefs_manager_total{what="images_touched"} 1`,
		"basefs_origin_fetches_total{origin=\"dir://" + filepath.Join(dir, "a") + "\"} 3"} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("metrics after a handover lack %q:\n%s", want, body)
		}
	}
	// Publish from the daemon's (now complete) state; another host reads it as its origin.
	pub := filepath.Join(dir, "pub")
	mustBasefs(t, "publish", "--state", d.state, "--to", "dir://"+pub, digest)
	d2 := startDaemon(t, filepath.Join(dir, "state2"), filepath.Join(dir, "mnt2"), "--origin", "dir://"+pub)
	if got := shaFile(t, filepath.Join(d2.mnt, digest)); got != want {
		t.Fatal("wrong bytes from the published layout")
	}
	// A second daemon on the same state is refused.
	c := exec.Command(basefsBin, "mount", "--state", d.state, filepath.Join(dir, "mnt3"))
	os.MkdirAll(filepath.Join(dir, "mnt3"), 0o755)
	out, err := c.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another daemon") {
		t.Fatalf("a second daemon on one state: %v\n%s", err, out)
	}
	// SIGTERM unmounts cleanly.
	d.stop()
	var sfs unix.Statfs_t
	if err := unix.Statfs(d.mnt, &sfs); err != nil || sfs.Type == 0x65735546 {
		t.Fatalf("after SIGTERM the mount is still there (statfs type %x, %v)", sfs.Type, err)
	}
	if _, err := control.NewClient(control.SocketFromState(d.state)).Status(context.Background()); err == nil {
		t.Fatal("the control socket still answers after stop")
	}
}

// A reload whose new binary cannot serve leaves the old serving process serving and is
// counted in basefs_handover_failures_total (the BasefsHandoverFailed alert's metric).
func TestFailedHandoverCounted(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedFUSE(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "basefs")
	run(t, "cp", basefsBin, bin)
	port := freePort(t)
	d := startDaemonBin(t, bin, nil, filepath.Join(dir, "state"), filepath.Join(dir, "mnt"), "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port))
	before := d.status().PID
	// An upgrade to a binary that fails at once.
	os.Remove(bin)
	os.WriteFile(bin, []byte("#!/bin/sh\necho broken >&2\nexit 1\n"), 0o755)
	syscall.Kill(d.cmd.Process.Pid, syscall.SIGHUP)
	want := "basefs_handover_failures_total 1"
	var body []byte
	for deadline := time.Now().Add(30 * time.Second); !bytes.Contains(body, []byte(want)); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within 30 s:\n%s\nlog:\n%s", want, body, d.log)
		}
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port)); err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
	}
	if st := d.status(); st.PID != before {
		t.Fatalf("the serving process changed (%d → %d) though the new binary failed", before, st.PID)
	}
	// It still stops cleanly.
	t0 := time.Now()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		t.Logf("stopped %.1fs after SIGTERM", time.Since(t0).Seconds())
	case <-time.After(40 * time.Second):
		log := d.log.String()
		d.kill9()
		t.Fatalf("after a failed handover the daemon did not stop on SIGTERM:\n%s", log)
	}
}
