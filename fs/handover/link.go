package handover

import (
	"errors"
	"os"
	"syscall"
)

// A link is the SOCK_SEQPACKET connection between the supervisor and a serving process: one
// message per write, and the end of either process is end of file on the other side.
//
//	supervisor → server   'I' first INIT   the connection's INIT; first: answer it to the kernel
//	server → supervisor   'R'              attached: ready to serve when told
//	supervisor → server   'G' resend       serve now (after asking the kernel to resend)
//	supervisor → server   'D'              drain: finish what you hold, then exit
//	server → supervisor   'A' pid INIT     (to a supervisor the server started) I, pid, serve
//	                                       this connection; here is its INIT
type link struct{ f *os.File }

const (
	msgInit  = 'I'
	msgReady = 'R'
	msgGo    = 'G'
	msgDrain = 'D'
	msgAdopt = 'A'
)

func (l *link) send(kind byte, payload ...byte) error {
	_, err := l.f.Write(append([]byte{kind}, payload...))
	return err
}

// recv returns the next message; io.EOF-like errors mean the other process is gone.
func (l *link) recv() (byte, []byte, error) {
	buf := make([]byte, initMax+2)
	for {
		n, err := l.f.Read(buf)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return 0, nil, err
		}
		if n == 0 {
			return 0, nil, errGone
		}
		return buf[0], buf[1:n], nil
	}
}

var errGone = errors.New("the other process is gone")

func (l *link) close() { l.f.Close() }
