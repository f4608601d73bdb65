// Package daemontest starts a `basefs mount` daemon and waits until it serves, for the tests
// that need one (cmd/basefs, agent/agenttest) and the benchmarks (bench): one harness, one
// way to wait.
//
// It waits by signal, not by polling: the daemon is given a NOTIFY_SOCKET (chunkstore/child
// Notify) and says READY=1 once the file system is mounted and its control socket listens
// (cmd/basefs notify.go, as systemd's Type=notify unit expects); one statfs of the mount
// point then returns when the serving process answers its first request. A daemon that exits
// first is seen at once (its Wait). The package imports no basefs package above chunkstore,
// so every layer that starts a daemon may use it.
package daemontest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/chunkstore/child"
)

// fuseMagic is a FUSE file system's statfs type.
const fuseMagic = 0x65735546

// Daemon is a running `basefs mount`.
type Daemon struct {
	*child.Process
	Mount string
	// Ready is how long it took from start until the mount answered.
	Ready  time.Duration
	notify *child.Notify
}

// Start starts cmd, a `basefs mount … mount` command whose output the caller has directed,
// with NOTIFY_SOCKET added to its environment (cmd.Env, or this process's when nil), and
// waits until the daemon has mounted mount and answers there. It fails when the daemon
// exits first, ctx ends or timeout passes; the daemon is then stopped.
func Start(ctx context.Context, cmd *exec.Cmd, mount string, timeout time.Duration) (*Daemon, error) {
	n, err := child.ListenNotify()
	if err != nil {
		return nil, err
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, n.Env())
	start := time.Now()
	if err := cmd.Start(); err != nil {
		n.Close()
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	d := &Daemon{Process: child.Started(cmd), Mount: mount, notify: n}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := d.wait(ctx); err != nil {
		d.Stop(10 * time.Second)
		return nil, err
	}
	d.Ready = time.Since(start)
	return d, nil
}

// wait waits for READY=1, then for the serving process's answer to a statfs of the mount.
func (d *Daemon) wait(ctx context.Context) error {
	select {
	case <-d.notify.Ready():
	case <-d.Dead:
		return fmt.Errorf("basefs mount exited before it was ready (%s)", d.Cmd.ProcessState)
	case <-ctx.Done():
		return fmt.Errorf("basefs mount did not say READY=1 on its NOTIFY_SOCKET: %w", ctx.Err())
	}
	answered := make(chan error, 1)
	go func() { // returns when the serving process answers, or the connection ends
		var st unix.Statfs_t
		err := unix.Statfs(d.Mount, &st)
		if err == nil && st.Type != fuseMagic {
			err = fmt.Errorf("not a FUSE mount (statfs type %#x)", st.Type)
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		if err != nil {
			return fmt.Errorf("basefs mount is ready but %s does not answer: %w", d.Mount, err)
		}
		return nil
	case <-d.Dead:
		return fmt.Errorf("basefs mount exited before it served %s (%s)", d.Mount, d.Cmd.ProcessState)
	case <-ctx.Done():
		return fmt.Errorf("basefs mount is ready but no serving process answered on %s: %w", d.Mount, ctx.Err())
	}
}

// Stop asks the daemon to unmount and exit (SIGTERM), kills it after grace, and detaches the
// mount if it is still there. It reports whether the daemon exited on SIGTERM (or had
// exited before).
func (d *Daemon) Stop(grace time.Duration) bool {
	polite := d.Process.Stop(grace)
	d.notify.Close()
	if !polite {
		unix.Unmount(d.Mount, unix.MNT_DETACH) // only if the daemon could not
	}
	return polite
}
