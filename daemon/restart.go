package daemon

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/daemon/control"
)

// A restart is asked on the control socket (POST /v1/restart) and answered by the supervisor,
// which alone knows how the handover went: the serving process that accepted the request is
// the one being replaced, and it exits before the handover ends. So it passes the client's
// connection itself (SCM_RIGHTS) to the supervisor's restart desk, a unix socket in the state
// directory (root's, 0600; the peer must be the supervisor's own user); the supervisor runs
// the restart and writes the answer on that connection: the new process (pid, version) when
// it serves, or the error at once — the old process then keeps serving.

// RestartsName is the supervisor's restart desk inside the state directory.
const RestartsName = "restart.sock"

// RestartsFromState returns the restart desk's path for a state directory.
func RestartsFromState(state string) string { return filepath.Join(state, RestartsName) }

// restartWrite bounds writing the answer to a client that stopped reading.
const restartWrite = 10 * time.Second

// restart is POST /v1/restart: root only; the connection goes to the supervisor's desk.
func (s *Server) restart(w http.ResponseWriter, r *http.Request) {
	if cred := peerOf(r); cred == nil || cred.Uid != 0 {
		reply(w, http.StatusForbidden, control.ErrorReply{Error: "restart: only root may restart the basefs daemon (as with its SIGHUP)"})
		return
	}
	if s.Restarts == "" {
		reply(w, http.StatusConflict, control.ErrorReply{Error: "restart: this basefs process has no supervisor (it was not started by basefs mount)"})
		return
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		reply(w, http.StatusInternalServerError, control.ErrorReply{Error: "restart: " + err.Error()})
		return
	}
	defer conn.Close() // this process's copy; the supervisor answers on its own
	if err := passConn(s.Restarts, conn); err != nil {
		s.log().Error("restart: cannot reach the supervisor's restart desk", "err", err)
		code := http.StatusServiceUnavailable
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			code = http.StatusNotImplemented // a supervisor of an older basefs: it restarts on SIGHUP
		}
		writeReply(conn, code, control.ErrorReply{Error: fmt.Sprintf("restart: the supervisor's restart desk %s: %v (it also restarts on SIGHUP)", s.Restarts, err)})
	}
}

// passConn sends c's descriptor, with this process's pid, to the desk at path.
func passConn(path string, c net.Conn) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("not a unix socket connection (%T)", c)
	}
	f, err := uc.File()
	if err != nil {
		return err
	}
	defer f.Close()
	d := net.Dialer{Timeout: 5 * time.Second}
	dc, err := d.Dial("unix", path)
	if err != nil {
		return err
	}
	defer dc.Close()
	dc.SetDeadline(time.Now().Add(5 * time.Second))
	pid := binary.LittleEndian.AppendUint32(nil, uint32(os.Getpid()))
	if _, _, err := dc.(*net.UnixConn).WriteMsgUnix(pid, unix.UnixRights(int(f.Fd())), nil); err != nil {
		return err
	}
	// The desk answers one byte once it holds the connection: then this copy may close.
	var ack [1]byte
	_, err = dc.Read(ack[:])
	return err
}

// writeReply writes one HTTP answer on a connection taken from the HTTP server, then closes
// its write side.
func writeReply(c net.Conn, code int, v any) error {
	body, _ := json.Marshal(v)
	c.SetWriteDeadline(time.Now().Add(restartWrite))
	resp := &http.Response{StatusCode: code, ProtoMajor: 1, ProtoMinor: 1, Close: true,
		Header:        http.Header{"Content-Type": {"application/json"}},
		ContentLength: int64(len(body)), Body: ioNopCloser{bytes.NewReader(body)}}
	return resp.Write(c)
}

type ioNopCloser struct{ *bytes.Reader }

func (ioNopCloser) Close() error { return nil }

// Desk is the supervisor's restart desk: it takes the connections serving processes pass
// (POST /v1/restart), restarts, and answers each.
type Desk struct {
	l       *net.UnixListener
	restart func() error
	status  func(ctx context.Context) (*control.Status, error)
	log     *slog.Logger
	mu      sync.Mutex     // one restart at a time (SIGHUP's too: Restart)
	wg      sync.WaitGroup // the accept loop
}

// OpenDesk listens at path (0600, root's) for connections passed by serving processes.
// restart is the supervisor's graceful restart; control the socket the new process answers
// its status on.
func OpenDesk(path string, restart func() error, controlSocket string, log *slog.Logger) (*Desk, error) {
	return openDesk(path, restart, control.NewClient(controlSocket).Status, log)
}

// openDesk is OpenDesk with status asking the new serving process.
func openDesk(path string, restart func() error, status func(context.Context) (*control.Status, error), log *slog.Logger) (*Desk, error) {
	l, err := Listen(path, 0)
	if err != nil {
		return nil, err
	}
	d := &Desk{l: l, restart: restart, status: status, log: log}
	d.wg.Add(1)
	go d.accept()
	return d, nil
}

// Restart runs a restart (SIGHUP's), one at a time with those asked on the socket.
func (d *Desk) Restart() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.restart()
}

// Close stops taking requests and removes the desk's socket.
func (d *Desk) Close() {
	d.l.Close()
	d.wg.Wait()
}

func (d *Desk) accept() {
	defer d.wg.Done()
	for {
		c, err := d.l.AcceptUnix()
		if err != nil {
			return
		}
		go d.take(c) // a restart in progress does not hold up Close
	}
}

// take receives one passed connection and answers it.
func (d *Desk) take(c *net.UnixConn) {
	defer c.Close()
	if cred := peerCred(c); cred == nil || cred.Uid != uint32(os.Geteuid()) {
		d.log.Warn("restart desk: a connection from another user refused")
		return
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf, oob := make([]byte, 16), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		d.log.Warn("restart desk: bad request", "err", err)
		return
	}
	client, err := receivedConn(oob[:oobn])
	if err != nil || n != 4 {
		d.log.Warn("restart desk: bad request", "err", err, "bytes", n)
		return
	}
	defer client.Close()
	c.Write([]byte{1})
	old := int(binary.LittleEndian.Uint32(buf))
	d.log.Info("restart asked on the control socket", "serving", old)
	code, ans := d.answer(old)
	if err := writeReply(client, code, ans); err != nil {
		d.log.Warn("restart: the answer could not be written (the client left?)", "err", err)
	}
}

// answer restarts and says how it went.
func (d *Desk) answer(old int) (int, any) {
	start := time.Now()
	if err := d.Restart(); err != nil {
		return http.StatusInternalServerError, control.ErrorReply{Error: fmt.Sprintf("%v (see the supervisor's log)", err)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := d.status(ctx)
	if err != nil {
		return http.StatusInternalServerError, control.ErrorReply{Error: fmt.Sprintf("handed over, but the new serving process does not answer its status: %v", err)}
	}
	return http.StatusOK, control.Restarted{OldPID: old, PID: st.PID, Version: st.Version, Seconds: time.Since(start).Seconds()}
}

// receivedConn makes a connection of the one descriptor in a control message.
func receivedConn(oob []byte) (net.Conn, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("want one control message (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) == 0 {
		return nil, fmt.Errorf("want a descriptor (%v)", err)
	}
	for _, fd := range fds[1:] {
		unix.Close(fd)
	}
	unix.CloseOnExec(fds[0])
	f := os.NewFile(uintptr(fds[0]), "client")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	return c, nil
}
