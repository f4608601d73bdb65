// Package child runs the programs basefs starts (qemu-img): with a scrubbed environment (no
// credential of the daemon's — OS_PASSWORD, AWS/S3 keys — ever reaches a child), killed with
// the process that started it (Pdeathsig), bounded in time by its context and, when asked,
// in CPU time and address space through prlimit(1) (util-linux), as nova runs qemu-img info.
//
// It also holds the lifecycle of the long-lived children (lifecycle.go, notify.go): start one
// on a socket pair and watch its exit (StartPaired, Started), start it again until it works
// (Retry), stop it politely then firmly (Stop, StopPid), and wait for a daemon's sd_notify
// READY=1 (Notify). The handover supervisor and the relay (fs), the benchmarks and the test
// harness (chunkstore/testenv/daemontest) share these; none keeps a copy.
package child

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Limits bound one child. A zero field sets no limit of that kind.
type Limits struct {
	CPU          time.Duration // RLIMIT_CPU, whole seconds
	AddressSpace int64         // RLIMIT_AS in bytes
	Timeout      time.Duration // wall-clock time; the child is killed when it runs out
}

// QemuImgInfo is nova's QEMU_IMG_LIMITS for `qemu-img info`: 30 s of CPU, 1 GiB of address
// space (a hostile header cannot make it spin or allocate the host's memory).
var QemuImgInfo = Limits{CPU: 30 * time.Second, AddressSpace: 1 << 30, Timeout: 2 * time.Minute}

// keepEnv are the only variables a child inherits.
var keepEnv = []string{"PATH", "TMPDIR", "TZ"}

// Env returns the environment every child gets: keepEnv from ours, and the C locale.
func Env() []string {
	env := []string{"LC_ALL=C", "LANG=C"}
	for _, k := range keepEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Command returns the command for name with args under lim, with the scrubbed environment
// and Pdeathsig. The caller runs it (Output, Run) and must honour ctx; see Run.
func Command(ctx context.Context, lim Limits, name string, args ...string) *exec.Cmd {
	var pre []string
	if lim.CPU > 0 {
		pre = append(pre, "--cpu="+strconv.FormatInt(int64(max(lim.CPU/time.Second, 1)), 10))
	}
	if lim.AddressSpace > 0 {
		pre = append(pre, "--as="+strconv.FormatInt(lim.AddressSpace, 10))
	}
	if len(pre) > 0 {
		args = append(append(append(pre, "--"), name), args...)
		name = "prlimit"
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = Env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs name with args under lim and returns its standard output. A failure names the
// program and carries its standard error; a timeout says so.
func Run(ctx context.Context, lim Limits, name string, args ...string) ([]byte, error) {
	if lim.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, lim.Timeout)
		defer cancel()
	}
	cmd := Command(ctx, lim, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err == nil {
		return out, nil
	}
	if errors.Is(err, exec.ErrNotFound) {
		return nil, fmt.Errorf("%s not found: %w (scripts/setup-host.sh installs it)", cmd.Args[0], err)
	}
	if ctx.Err() != nil && lim.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, fmt.Errorf("%s %s: killed after %s (its time bound)", name, first(args), lim.Timeout)
	}
	msg := strings.TrimSpace(stderr.String())
	if msg == "" {
		msg = err.Error()
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ProcessState != nil {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			msg += fmt.Sprintf(" (killed by %s: a resource limit?)", ws.Signal())
		}
	}
	return nil, fmt.Errorf("%s %s: %s", name, first(args), msg)
}

func first(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}
