package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/daemon/control"
)

// daemon is a running `basefs mount`.
type daemon struct {
	cmd   *exec.Cmd
	State string
	Mount string
	log   string
	done  chan struct{}
}

// daemonFlags are the flags every bench daemon gets: background fill and scrub off (the
// benchmarks measure the read path alone; a scrub would compete for the 2 cores).
var daemonFlags = []string{"--fill-rate", "0", "--scrub-rate", "0"}

// startDaemon runs `basefs mount --state state [--origin o]… extra… mount` and waits until
// its control socket answers through the mount.
func (e *env) startDaemon(ctx context.Context, state, mount string, origins []string, extra ...string) (*daemon, error) {
	for _, d := range []string{state, mount} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		os.Chmod(d, 0o755)
	}
	args := []string{"mount", "--state", state}
	for _, o := range origins {
		args = append(args, "--origin", o)
	}
	args = append(args, daemonFlags...)
	args = append(args, extra...)
	args = append(args, mount)
	logPath := filepath.Join(filepath.Dir(state), filepath.Base(state)+".daemon.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(e.basefs, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("basefs mount: %w", err)
	}
	logf.Close()
	d := &daemon{cmd: cmd, State: state, Mount: mount, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); close(d.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if sock, err := control.SocketFromMount(mount); err == nil {
			if _, err := control.NewClient(sock).Status(ctx); err == nil {
				return d, nil
			}
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("basefs mount exited: %s", tail(d.Log(), 1500))
		case <-ctx.Done():
			d.Stop()
			return nil, ctx.Err()
		case <-time.After(30 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.Stop()
			return nil, fmt.Errorf("basefs mount did not serve %s within 30 s: %s", mount, tail(d.Log(), 1500))
		}
	}
}

// Log returns the daemon's output so far.
func (d *daemon) Log() string {
	b, _ := os.ReadFile(d.log)
	return string(b)
}

// PID is the daemon's process id.
func (d *daemon) PID() int { return d.cmd.Process.Pid }

// Stop asks the daemon to unmount and exit (SIGTERM), kills it after 20 s, and detaches the
// mount if it is still there.
func (d *daemon) Stop() {
	stopProcess(d.cmd.Process, d.done, 20*time.Second)
	unix.Unmount(d.Mount, unix.MNT_DETACH) // only if the daemon could not
}

// stopProcess asks p to exit (SIGTERM) unless it has, kills it if it has not within grace,
// and returns once it has exited: when done is closed.
func stopProcess(p *os.Process, done <-chan struct{}, grace time.Duration) {
	select {
	case <-done:
		return
	default:
	}
	p.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		p.Kill()
		<-done
	}
}

// Status asks the daemon for its status.
func (d *daemon) Status(ctx context.Context) (*control.Status, error) {
	return control.NewClient(control.SocketFromState(d.State)).Status(ctx)
}

// OriginBytes is the chunk bytes the daemon has fetched from all its origins.
func (d *daemon) OriginBytes(ctx context.Context) (int64, error) {
	st, err := d.Status(ctx)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, o := range st.Stats.Origins {
		n += o.Bytes
	}
	return n, nil
}

// procMemory returns a process's peak and current resident set (VmHWM, VmRSS) in bytes.
func procMemory(pid int) (hwm, rss int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmHWM" && k != "VmRSS") {
			continue
		}
		fields := strings.Fields(v) // "12345 kB"
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: unexpected %q", pid, k, v)
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, 0, err
		}
		if k == "VmHWM" {
			hwm = n * 1024
		} else {
			rss = n * 1024
		}
	}
	if hwm == 0 || rss == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmHWM/VmRSS", pid)
	}
	return hwm, rss, sc.Err()
}
