package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/agent"
	"github.com/basefs/basefs/agent/agenttest"
	"github.com/basefs/basefs/daemon/control"
)

// TestRestartsInvisibleToGuests: a guest reads its whole disk in passes (cache mode none:
// every read reaches the FUSE daemon) while the daemon is restarted gracefully 10 times,
// upgraded once to a rebuilt binary, its serving process killed with SIGKILL 3 times, its
// supervisor killed with SIGKILL 2 times, then one of each in a row. Every pass must print
// the right checksum and no I/O error; a reader on the host never sees an error and the mount
// point stays mounted throughout. The longest host read in each phase is the pause it saw.
func TestRestartsInvisibleToGuests(t *testing.T) {
	e := agenttest.NewWith(t, "--fill-rate", "0", "--memory-cache", "1048576")
	img := e.Import(41, 6<<20, 2<<20)
	id := e.ID("restart")
	req := e.SpawnRequest(id, img, agent.GiB, img.Size, "m")
	req.Cmdline += " basefs.passes=400"
	res, err := e.Agent.Spawn(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	agenttest.WaitConsole(t, res.Console, "BASEFS-GUEST pass=1 ", 60*time.Second)

	// A host reader: O_DIRECT reads of the image and statfs of the mount, all the time.
	stop := make(chan struct{})
	var hostReads, hostErrs, slowest atomic.Int64 // slowest: the longest read (ns) this phase
	var firstErr atomic.Value
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1<<20+4096)
		p := filepath.Join(e.Mount, img.Digest)
		for {
			select {
			case <-stop:
				return
			default:
			}
			var st unix.Statfs_t
			err := unix.Statfs(e.Mount, &st)
			if err == nil && st.Type != 0x65735546 {
				err = errors.New("the mount point is not a FUSE mount")
			}
			if err == nil {
				t0 := time.Now()
				var f *os.File
				if f, err = os.OpenFile(p, os.O_RDONLY|syscall.O_DIRECT, 0); err == nil {
					_, err = f.ReadAt(alignedBuf(buf, 1<<20), int64(hostReads.Load()%8)<<20)
					f.Close()
				}
				if d := int64(time.Since(t0)); d > slowest.Load() {
					slowest.Store(d)
				}
			}
			hostReads.Add(1)
			if err != nil {
				hostErrs.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})

	status := func() *control.Status {
		st, err := control.NewClient(control.SocketFromState(e.State)).Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	restart := func() time.Duration {
		t0 := time.Now()
		out, err := exec.Command(agenttest.Basefs(t), "restart", e.Mount).CombinedOutput()
		if err != nil {
			t.Fatalf("basefs restart: %v\n%s", err, out)
		}
		return time.Since(t0)
	}
	phase := func() time.Duration { return time.Duration(slowest.Swap(0)) }
	pauses := map[string]time.Duration{}
	var graceful []time.Duration
	phase()
	for range 10 {
		graceful = append(graceful, restart())
		time.Sleep(300 * time.Millisecond)
	}
	// Upgrade: a rebuilt binary (another version) installed where the daemon was started from.
	bin := agenttest.Basefs(t)
	up := bin + ".new"
	build := exec.Command("go", "build", "-ldflags", "-X main.version=upgraded", "-o", up, "./cmd/basefs")
	build.Dir = agenttest.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	if err := os.Rename(up, bin); err != nil {
		t.Fatal(err)
	}
	graceful = append(graceful, restart())
	if v := status().Version; v != "upgraded" {
		t.Fatalf("after the upgrade the serving binary is version %q; want upgraded", v)
	}
	time.Sleep(500 * time.Millisecond)
	pauses["graceful restarts and upgrade"] = phase()
	// Crashes: SIGKILL the serving process; a new one takes over.
	var crashes, supervisors []time.Duration
	killServer := func() {
		old := status().PID
		t0 := time.Now()
		syscall.Kill(old, syscall.SIGKILL)
		for {
			st, err := control.NewClient(control.SocketFromState(e.State)).Status(context.Background())
			if err == nil && st.PID != old {
				crashes = append(crashes, time.Since(t0))
				return
			}
			if time.Since(t0) > 5*time.Second {
				t.Fatalf("no serving process took over within 5 s of killing %d", old)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// The supervisor: SIGKILL it; the serving process starts another.
	killSupervisor := func() {
		old := agenttest.SupervisorPID(t, e.Mount)
		t0 := time.Now()
		syscall.Kill(old, syscall.SIGKILL)
		for {
			if pid := agenttest.SupervisorPID(t, e.Mount); pid != old && syscall.Kill(pid, 0) == nil {
				supervisors = append(supervisors, time.Since(t0))
				return
			}
			if time.Since(t0) > 5*time.Second {
				t.Fatalf("no supervisor replaced %d within 5 s", old)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for range 3 {
		time.Sleep(500 * time.Millisecond)
		killServer()
	}
	time.Sleep(500 * time.Millisecond)
	pauses["serving process killed"] = phase()
	for range 2 {
		time.Sleep(500 * time.Millisecond)
		killSupervisor()
	}
	time.Sleep(500 * time.Millisecond)
	pauses["supervisor killed"] = phase()
	killSupervisor()
	killServer()
	time.Sleep(time.Second)
	pauses["supervisor, then serving process"] = phase()
	close(stop)
	wg.Wait()

	// The guest: stop it; every pass it printed is right, none failed.
	log, _ := os.ReadFile(res.Console)
	e.Agent.Terminate(context.Background(), id)
	passes := regexp.MustCompile(`BASEFS-GUEST pass=\d+ (.*)`).FindAllStringSubmatch(string(log), -1)
	want := fmt.Sprintf("sha256=%s bytes=%d", img.SHA256, img.Size)
	bad := 0
	for _, p := range passes {
		if strings.TrimSpace(p[1]) != want {
			bad++
			t.Errorf("guest pass: %s", p[0])
		}
	}
	t.Logf("guest passes %d (bad %d) across 10 graceful restarts, 1 upgrade, 3+1 SIGKILLs of the serving process, 2+1 of the supervisor", len(passes), bad)
	t.Logf("graceful restart (basefs restart, wall): %v", graceful)
	t.Logf("crash takeover (kill -9 to a new serving process answering): %v", crashes)
	t.Logf("supervisor replaced (kill -9 to a new supervisor): %v", supervisors)
	t.Logf("longest host O_DIRECT 1 MiB read by phase: %v", pauses)
	t.Logf("host reads %d, errors %d (first: %v)", hostReads.Load(), hostErrs.Load(), firstErr.Load())
	if len(passes) < 5 {
		t.Fatalf("the guest completed only %d passes", len(passes))
	}
	if hostErrs.Load() != 0 {
		t.Fatalf("the host reader saw %d errors, first %v", hostErrs.Load(), firstErr.Load())
	}
}

// alignedBuf returns n bytes of buf aligned for O_DIRECT (buf has 4 KiB to spare).
func alignedBuf(buf []byte, n int) []byte {
	off := int(-uintptr(unsafe.Pointer(&buf[0])) & 4095)
	return buf[off : off+n]
}
