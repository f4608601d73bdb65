package child

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A long-lived child (a serving process, a daemon under test) is started once and watched:
// Started gives its exit as a channel, Stop ends it politely then firmly, Retry starts it
// again until it works. The handover supervisor, the relay, the benchmarks and the test
// harness all use these; none keeps its own copy.

// Process is a started child and the channel closed once it has exited (Wait returned).
// Only Started waits for it: read Cmd.ProcessState after Dead is closed.
type Process struct {
	Cmd  *exec.Cmd
	Pid  int
	Dead <-chan struct{}
}

// Started watches cmd, which has been started: its Dead is closed when Wait returns.
func Started(cmd *exec.Cmd) *Process {
	dead := make(chan struct{})
	go func() { cmd.Wait(); close(dead) }()
	return &Process{Cmd: cmd, Pid: cmd.Process.Pid, Dead: dead}
}

// Exited reports whether p has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.Dead:
		return true
	default:
		return false
	}
}

// Stop ends p: SIGTERM, then SIGKILL after grace (Stop).
func (p *Process) Stop(grace time.Duration) bool { return Stop(p.Cmd.Process, p.Dead, grace) }

// StartPaired makes a SOCK_SEQPACKET socket pair (one message per write; the end of either
// process is end of file on the other side), has start start a process with one end among
// its files, and returns that process and the other end. buf > 0 sets both ends' buffers
// (SO_SNDBUFFORCE, SO_RCVBUFFORCE: root may exceed the system's maximum) so that a message
// of up to about buf/4 bytes fits.
func StartPaired(buf int, start func(end *os.File) (*exec.Cmd, error)) (*Process, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	if buf > 0 {
		for _, fd := range fds {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, buf)
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, buf)
		}
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "pair"), os.NewFile(uintptr(fds[1]), "pair")
	cmd, err := start(theirs)
	theirs.Close()
	if err != nil {
		mine.Close()
		return nil, nil, err
	}
	return Started(cmd), mine, nil
}

// Retry calls try until it succeeds, logging each failure ("cannot start <what>; retrying")
// and waiting backoff between attempts (a broken binary or state may take a while to be
// fixed). It gives up, returning false, when quit reports true after a failure.
func Retry(log *slog.Logger, what string, backoff time.Duration, quit func() bool, try func() error) bool {
	for attempt := 1; ; attempt++ {
		err := try()
		if err == nil {
			return true
		}
		log.Error("cannot start "+what+"; retrying", "attempt", attempt, "err", err)
		if quit() {
			return false
		}
		time.Sleep(backoff)
	}
}

// Stop asks process p to exit (SIGTERM) unless dead is closed already, and waits until it
// is; if it has not exited within grace it is killed (SIGKILL) and waited for. It reports
// whether p exited without being killed.
func Stop(p *os.Process, dead <-chan struct{}, grace time.Duration) bool {
	select {
	case <-dead:
		return true
	default:
	}
	p.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-dead:
		return true
	case <-t.C:
		p.Kill()
		<-dead
		return false
	}
}

// StopPid is Stop for a process that is not our child (a supervisor another process
// started): SIGTERM, wait for its exit through a pidfd (no polling), SIGKILL after grace. It
// reports whether the process exited without being killed; one that is gone already has.
func StopPid(pid int, grace time.Duration) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return true // ESRCH: gone
	}
	defer unix.Close(fd)
	if unix.PidfdSendSignal(fd, unix.SIGTERM, nil, 0) != nil {
		return true
	}
	if pidfdExited(fd, grace) {
		return true
	}
	unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	pidfdExited(fd, 5*time.Second)
	return false
}

// WaitExit waits up to d for process pid (our child or not) to exit, through a pidfd, and
// reports whether it has; one that is gone already has.
func WaitExit(pid int, d time.Duration) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return true
	}
	defer unix.Close(fd)
	return pidfdExited(fd, d)
}

// pidfdExited waits up to d for the process of pidfd fd to exit (the pidfd becomes readable).
func pidfdExited(fd int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(p, int(max(time.Until(deadline), 0)/time.Millisecond))
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0
	}
}
