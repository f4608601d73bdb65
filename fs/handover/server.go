package handover

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/basefs/basefs/chunkstore/child"
)

// Server is a serving process's side of the handover: its link to the supervisor.
type Server struct {
	fuseFD int
	log    *slog.Logger
	init   []byte
	first  bool
	// respawn starts a supervisor that adopts this process (its link end among its files).
	respawn func(link *os.File) (*exec.Cmd, error)

	mu         sync.Mutex
	link       *link
	supervisor int
}

// Join reads the supervisor's INIT message on the link at linkFD. fuseFD is the connection.
func Join(linkFD, fuseFD int, log *slog.Logger, respawn func(link *os.File) (*exec.Cmd, error)) (*Server, error) {
	l := &link{os.NewFile(uintptr(linkFD), "link")}
	kind, p, err := l.recv()
	if err != nil || kind != msgInit || len(p) < 1+inHeaderSize {
		return nil, fmt.Errorf("handover: want the supervisor's INIT, got %q (%v)", kind, err)
	}
	return &Server{fuseFD: fuseFD, log: log, init: append([]byte(nil), p[1:]...), first: p[0] == 1,
		respawn: respawn, link: l, supervisor: os.Getppid()}, nil
}

// Attach makes the go-fuse server for the connection (Attach); the first serving process of
// a connection answers the kernel's INIT. It then tells the supervisor it is ready and waits
// to be told to serve; when the supervisor says so, the kernel first resends what a previous
// process held. Call Serve on the server after it returns.
func (s *Server) Attach(newServer func(mountpoint string) (*fuse.Server, error)) (*fuse.Server, error) {
	srv, reply, err := Attach(s.init, s.fuseFD, newServer)
	if err != nil {
		return nil, err
	}
	if s.first {
		if err := WriteInitReply(s.fuseFD, reply); err != nil {
			return nil, err
		}
	}
	if err := s.link.send(msgReady); err != nil {
		return nil, fmt.Errorf("handover: tell the supervisor: %w", err)
	}
	kind, p, err := s.link.recv()
	if err != nil || kind != msgGo || len(p) != 1 {
		return nil, fmt.Errorf("handover: want the supervisor's go, got %q (%v)", kind, err)
	}
	if p[0] == 1 {
		if err := Resend(s.fuseFD); err != nil {
			return nil, fmt.Errorf("handover: ask the kernel to resend: %w", err)
		}
	}
	return srv, nil
}

// Run answers the supervisor until it says drain (Run returns: the caller finishes what it
// holds and exits). When the supervisor dies, Run starts another that adopts this process,
// and goes on with it.
func (s *Server) Run() {
	for {
		kind, _, err := s.link.recv()
		if err == nil {
			if kind == msgDrain {
				return
			}
			continue
		}
		s.link.close()
		s.log.Error("the supervisor died; starting another (the mount keeps being served)")
		// Back off between attempts: the binary may be being replaced.
		if !child.Retry(s.log, "a supervisor", time.Second, func() bool { return !Alive(s.fuseFD) }, s.replaceSupervisor) {
			return
		}
	}
}

// replaceSupervisor starts a supervisor that adopts this process.
func (s *Server) replaceSupervisor() error {
	p, end, err := child.StartPaired(0, s.respawn)
	if err != nil {
		return err
	}
	l := &link{end}
	msg := binary.LittleEndian.AppendUint32(nil, uint32(os.Getpid()))
	if err := l.send(msgAdopt, append(msg, s.init...)...); err != nil {
		l.close()
		p.Cmd.Process.Kill()
		return err
	}
	s.mu.Lock()
	s.link, s.supervisor = l, p.Pid
	s.mu.Unlock()
	s.log.Info("started a supervisor that adopted this serving process", "supervisor", p.Pid)
	return nil
}

// SupervisorPID returns the pid of the current supervisor.
func (s *Server) SupervisorPID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.supervisor
}
