package handover

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/basefs/basefs/chunkstore/child"
)

// Supervisor holds a FUSE connection and keeps one serving process on it (see the package
// doc): it starts it, replaces it gracefully on Restart, starts another at once when it dies,
// and never reads the connection itself.
type Supervisor struct {
	dev   *os.File
	init  []byte
	log   *slog.Logger
	start func(link *os.File) (*exec.Cmd, error) // starts a serving process on its link end

	restartMu sync.Mutex // one Restart at a time

	mu       sync.Mutex
	cur      *server
	closing  bool
	gone     chan struct{} // closed when the connection has ended
	goneOnce sync.Once
}

type server struct {
	link     *link
	pid      int
	proc     *child.Process // nil: adopted (started by someone else)
	ready    chan struct{}  // closed at its 'R'
	dead     chan struct{}  // closed when its end of the link is gone: it exited
	retiring bool           // being replaced or stopped on purpose (under Supervisor.mu)
}

// process is w's process, to signal.
func (w *server) process() *os.Process {
	if w.proc != nil {
		return w.proc.Cmd.Process
	}
	p, _ := os.FindProcess(w.pid) // never fails on Unix; a pidfd where the kernel has them
	return p
}

// Timeouts of a handover.
const (
	readyTimeout = 60 * time.Second // a new serving process to attach
	drainTimeout = 30 * time.Second // an old one to finish and exit
)

// NewSupervisor returns the supervisor of connection dev, whose INIT was init (ReadInit; an
// adopting supervisor passes nil: the serving process tells it). start runs `basefs serve`
// with the given link end among its files.
func NewSupervisor(dev *os.File, init []byte, log *slog.Logger, start func(link *os.File) (*exec.Cmd, error)) *Supervisor {
	return &Supervisor{dev: dev, init: init, log: log, start: start, gone: make(chan struct{})}
}

// Run serves until the connection ends. With adopt nil it starts the first serving process,
// which answers the kernel's INIT; otherwise adopt is a link to the process already serving
// (it started this supervisor after the previous one died).
func (s *Supervisor) Run(adopt *os.File) error {
	if adopt != nil {
		w, err := s.adopt(adopt)
		if err != nil {
			return err
		}
		s.install(w)
	} else {
		w, err := s.spawn(true)
		if err != nil {
			return err
		}
		if err := s.serve(w, 0); err != nil {
			return err
		}
	}
	<-s.gone
	return nil
}

// adopt takes over the serving process at the other end of f.
func (s *Supervisor) adopt(f *os.File) (*server, error) {
	l := &link{f}
	kind, p, err := l.recv()
	if err != nil || kind != msgAdopt || len(p) < 4+inHeaderSize {
		return nil, fmt.Errorf("adopt the serving process: want its 'A' message, got %q (%v)", kind, err)
	}
	s.init = append([]byte(nil), p[4:]...)
	w := &server{link: l, pid: int(binary.LittleEndian.Uint32(p)), ready: make(chan struct{}), dead: make(chan struct{})}
	close(w.ready)
	go s.listen(w)
	s.log.Info("supervising the serving process that started this supervisor", "pid", w.pid)
	return w, nil
}

// spawn starts a serving process, hands it INIT and waits until it has attached.
func (s *Supervisor) spawn(first bool) (*server, error) {
	p, end, err := child.StartPaired(0, s.start)
	if err != nil {
		return nil, err
	}
	l := &link{end}
	w := &server{link: l, pid: p.Pid, proc: p, ready: make(chan struct{}), dead: make(chan struct{})}
	go s.listen(w)
	flag := byte(0)
	if first {
		flag = 1
	}
	if err := l.send(msgInit, append([]byte{flag}, s.init...)...); err != nil {
		p.Cmd.Process.Kill()
		return nil, fmt.Errorf("serving process %d: hand it INIT: %w", w.pid, err)
	}
	select {
	case <-w.ready:
		return w, nil
	case <-w.dead:
		return nil, fmt.Errorf("serving process %d exited before it was ready", w.pid)
	case <-time.After(readyTimeout):
		p.Cmd.Process.Kill()
		return nil, fmt.Errorf("serving process %d not ready within %s", w.pid, readyTimeout)
	}
}

// listen reads w's messages until its end of the link is gone.
func (s *Supervisor) listen(w *server) {
	for {
		kind, _, err := w.link.recv()
		if err != nil {
			break
		}
		if kind == msgReady {
			select {
			case <-w.ready:
			default:
				close(w.ready)
			}
		}
	}
	if w.proc != nil {
		<-w.proc.Dead
	}
	w.link.close()
	close(w.dead)
}

// serve tells w to go (resend 1: after asking the kernel to resend what its predecessor
// held) and makes it the current serving process.
func (s *Supervisor) serve(w *server, resend byte) error {
	if err := w.link.send(msgGo, resend); err != nil {
		return fmt.Errorf("serving process %d: %w", w.pid, err)
	}
	s.install(w)
	return nil
}

// install makes w the current serving process and watches it.
func (s *Supervisor) install(w *server) {
	s.mu.Lock()
	s.cur = w
	s.mu.Unlock()
	go s.watch(w)
}

// watch waits for w to exit; unless it was replaced or the connection ended, it died: another
// takes over, and the kernel resends what w held.
func (s *Supervisor) watch(w *server) {
	<-w.dead
	s.mu.Lock()
	if w.retiring || s.closing {
		s.mu.Unlock()
		return
	}
	if s.cur == w {
		s.cur = nil
	}
	s.mu.Unlock()
	if !Alive(int(s.dev.Fd())) {
		s.log.Info("the FUSE connection ended (unmounted)")
		s.goneOnce.Do(func() { close(s.gone) })
		return
	}
	start := time.Now()
	s.log.Error("serving process died; starting another on the same FUSE connection", "pid", w.pid)
	quit := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.closing || !Alive(int(s.dev.Fd()))
	}
	ok := child.Retry(s.log, "a serving process", time.Second, quit, func() error {
		nw, err := s.spawn(false)
		if err != nil {
			return err
		}
		if err := s.serve(nw, 1); err != nil {
			nw.proc.Cmd.Process.Kill()
			return err
		}
		s.log.Info("took over the FUSE connection after a crash; the kernel resends what the dead process held", "old", w.pid, "new", nw.pid, "pause", time.Since(start))
		return nil
	})
	if !ok {
		s.goneOnce.Do(func() { close(s.gone) })
	}
}

// restart replaces the serving process by a new one (the binary on disk now: an upgrade):
// the new one attaches; the old one finishes what it holds and exits; the kernel resends
// whatever the old one read last and did not answer; the new one serves.
func (s *Supervisor) restart() error {
	s.mu.Lock()
	old := s.cur
	s.mu.Unlock()
	if old == nil {
		return errors.New("no serving process to replace (one is being started)")
	}
	nw, err := s.spawn(false)
	if err != nil {
		return fmt.Errorf("the new serving process failed; the old one keeps serving: %w", err)
	}
	s.mu.Lock()
	old.retiring = true
	s.mu.Unlock()
	start := time.Now()
	old.link.send(msgDrain)
	select {
	case <-old.dead:
	case <-time.After(drainTimeout):
		s.log.Warn("old serving process did not exit after draining; killing it", "pid", old.pid)
		syscall.Kill(old.pid, syscall.SIGKILL)
		<-old.dead
	}
	if err := s.serve(nw, 1); err != nil {
		return err
	}
	s.log.Info("restarted the serving process", "old", old.pid, "new", nw.pid, "pause", time.Since(start))
	return nil
}

// Restart replaces the serving process gracefully (restart) and waits for it; restarts run
// one at a time.
func (s *Supervisor) Restart() error {
	s.restartMu.Lock()
	defer s.restartMu.Unlock()
	select {
	case <-s.gone:
		return errors.New("the file system is no longer mounted")
	default:
		return s.restart()
	}
}

// Stop ends the serving process (after unmount).
func (s *Supervisor) Stop() {
	s.mu.Lock()
	s.closing = true
	w := s.cur
	if w != nil {
		w.retiring = true
	}
	s.mu.Unlock()
	if w != nil {
		child.Stop(w.process(), w.dead, 15*time.Second)
	}
}
