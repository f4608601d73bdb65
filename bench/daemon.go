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
	"time"

	"github.com/basefs/basefs/chunkstore/testenv/daemontest"
	"github.com/basefs/basefs/daemon/control"
)

// daemon is a running `basefs mount`.
type daemon struct {
	*daemontest.Daemon
	State string
	log   string
}

// daemonFlags are the flags every bench daemon gets: background fill and scrub off (the
// benchmarks measure the read path alone; a scrub would compete for the 2 cores).
var daemonFlags = []string{"--fill-rate", "0", "--scrub-rate", "0"}

// startDaemon runs `basefs mount --state state [--origin o]… extra… mount` and waits until
// it serves the mount (daemontest: its READY=1, then the mount's first answer).
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
	dd, err := daemontest.Start(ctx, cmd, mount, 30*time.Second)
	logf.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, tail(readLog(logPath), 1500))
	}
	return &daemon{Daemon: dd, State: state, log: logPath}, nil
}

func readLog(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// Log returns the daemon's output so far.
func (d *daemon) Log() string { return readLog(d.log) }

// PID is the daemon's process id.
func (d *daemon) PID() int { return d.Pid }

// Stop asks the daemon to unmount and exit (SIGTERM), kills it after 20 s, and detaches the
// mount if it is still there.
func (d *daemon) Stop() { d.Daemon.Stop(20 * time.Second) }

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
