package child

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
)

// Notify is a socket a child reports its state on, as systemd's NOTIFY_SOCKET (sd_notify(3)):
// a datagram of NAME=VALUE lines, READY=1 once it is up. Whoever starts a daemon waits on
// Ready instead of polling it.
type Notify struct {
	dir   string
	conn  *net.UnixConn
	ready chan struct{}
	once  sync.Once
}

// notifyMax bounds one datagram (systemd's own limit is about 4 KiB of state).
const notifyMax = 4096

// ListenNotify makes a notification socket in a new private (0700) directory.
func ListenNotify() (*Notify, error) {
	dir, err := os.MkdirTemp("", "basefs-notify")
	if err != nil {
		return nil, fmt.Errorf("notification socket: %w", err)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "s"), Net: "unixgram"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("notification socket: %w", err)
	}
	n := &Notify{dir: dir, conn: conn, ready: make(chan struct{})}
	go n.read()
	return n, nil
}

// read reads datagrams until Close; the first READY=1 closes ready. Later ones (a supervisor
// that adopted the serving process says MAINPID=) are read and dropped, so the sender never
// finds the socket full or gone.
func (n *Notify) read() {
	buf := make([]byte, notifyMax)
	for {
		k, err := n.conn.Read(buf)
		if err != nil {
			return
		}
		for _, line := range bytes.Split(buf[:k], []byte("\n")) {
			if string(line) == "READY=1" {
				n.once.Do(func() { close(n.ready) })
			}
		}
	}
}

// Env is the variable to add to the child's environment: NOTIFY_SOCKET=<the socket>.
func (n *Notify) Env() string { return "NOTIFY_SOCKET=" + n.conn.LocalAddr().String() }

// Ready is closed when a child has sent READY=1.
func (n *Notify) Ready() <-chan struct{} { return n.ready }

// Close removes the socket.
func (n *Notify) Close() {
	n.conn.Close()
	os.RemoveAll(n.dir)
}
