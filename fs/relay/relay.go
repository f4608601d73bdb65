package relay

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
	"golang.org/x/sys/unix"
)

const (
	inHeaderSize  = 40 // fuse_in_header
	outHeaderSize = 16 // fuse_out_header
	opForget      = 2
	opInit        = 26
	opInterrupt   = 36
	opBatchForget = 42
	// replayUnique marks the INIT the relay replays to a new worker (kernel uniques are small).
	replayUnique = 1 << 63
	// msgMax is the largest message either way: a 1 MiB read reply plus headers.
	msgMax = 1<<20 + 4096
)

type worker struct {
	*child.Process
	sock     *os.File      // the relay's end
	inflight int           // requests sent and not answered (under relay.mu)
	ready    chan struct{} // closed when it has answered INIT
	retiring bool          // being replaced on purpose (under relay.mu)
}

type pending struct {
	msg []byte
	w   *worker
}

// Relay moves a FUSE connection's requests to the current serving process and its replies
// back (see the package doc).
type Relay struct {
	dev   *os.File
	log   *slog.Logger
	start func(sock *os.File) (*exec.Cmd, error) // starts a worker on its socket end

	mu       sync.Mutex
	cond     *sync.Cond
	cur      *worker // receives new requests; nil while none is ready
	initMsg  []byte
	inflight map[uint64]*pending
	closing  bool
	restarts chan chan error // graceful restart requests
	gone     chan struct{}   // closed when the kernel ends the connection (unmounted)
	goneOnce sync.Once
	crashes  int
}

// New returns a relay of the FUSE connection dev (an open, mounted /dev/fuse) to serving
// processes that start runs, each on its end of a new SOCK_SEQPACKET pair.
func New(dev *os.File, log *slog.Logger, start func(sock *os.File) (*exec.Cmd, error)) *Relay {
	r := &Relay{dev: dev, log: log, start: start, inflight: make(map[uint64]*pending), restarts: make(chan chan error), gone: make(chan struct{})}
	r.cond = sync.NewCond(&r.mu)
	return r
}

// spawn starts a worker on a new socket pair.
func (r *Relay) spawn() (*worker, error) {
	p, mine, err := child.StartPaired(4*msgMax, r.start) // one message holds a whole 1 MiB reply
	if err != nil {
		return nil, err
	}
	w := &worker{Process: p, sock: mine, ready: make(chan struct{})}
	go r.fromWorker(w)
	return w, nil
}

// replayInit sends the saved INIT to w and waits for its answer.
func (r *Relay) replayInit(w *worker) error {
	msg := append([]byte(nil), r.initMsg...)
	binary.LittleEndian.PutUint64(msg[8:], replayUnique)
	if _, err := w.sock.Write(msg); err != nil {
		return fmt.Errorf("worker %d: send INIT: %w", w.Pid, err)
	}
	select {
	case <-w.ready:
		return nil
	case <-w.Dead:
		return fmt.Errorf("worker %d exited before it was ready", w.Pid)
	case <-time.After(30 * time.Second):
		return fmt.Errorf("worker %d did not answer INIT within 30 s", w.Pid)
	}
}

// Run serves until the file system is unmounted. The first worker answers the kernel's own INIT.
func (r *Relay) Run() error {
	w, err := r.spawn()
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.cur = w
	r.mu.Unlock()
	go r.watch(w)
	for range 4 {
		go r.fromKernel()
	}
	for {
		select {
		case reply := <-r.restarts:
			reply <- r.restart()
		case <-r.gone:
			return nil
		}
	}
}

// fromKernel moves requests from /dev/fuse to the current worker.
func (r *Relay) fromKernel() {
	buf := make([]byte, msgMax)
	for {
		n, err := r.dev.Read(buf)
		if err != nil || n == 0 {
			if err != nil && (errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.EAGAIN)) {
				continue
			}
			// ENODEV: unmounted (EOF: the connection's other end is gone).
			r.mu.Lock()
			r.closing = true
			r.cond.Broadcast()
			r.mu.Unlock()
			r.goneOnce.Do(func() { close(r.gone) })
			return
		}
		if n < inHeaderSize {
			continue
		}
		msg := append([]byte(nil), buf[:n]...)
		op := binary.LittleEndian.Uint32(msg[4:])
		unique := binary.LittleEndian.Uint64(msg[8:])
		r.mu.Lock()
		if op == opInit && r.initMsg == nil {
			r.initMsg = msg
		}
		for r.cur == nil && !r.closing {
			r.cond.Wait()
		}
		w := r.cur
		if w == nil {
			r.mu.Unlock()
			return
		}
		if op != opForget && op != opBatchForget && op != opInterrupt {
			r.inflight[unique] = &pending{msg: msg, w: w}
			w.inflight++
		}
		r.mu.Unlock()
		// A failed send is resent when the crash is handled.
		w.sock.Write(msg)
	}
}

// fromWorker moves w's replies (and notifications) to /dev/fuse.
func (r *Relay) fromWorker(w *worker) {
	buf := make([]byte, msgMax)
	for {
		n, err := w.sock.Read(buf)
		if err != nil || n == 0 {
			return // the worker is gone; watch handles it
		}
		if n < outHeaderSize {
			continue
		}
		unique := binary.LittleEndian.Uint64(buf[8:])
		if unique == replayUnique {
			close(w.ready)
			continue
		}
		if unique != 0 {
			r.mu.Lock()
			p := r.inflight[unique]
			if p == nil || p.w != w {
				r.mu.Unlock()
				continue // not this worker's to answer
			}
			delete(r.inflight, unique)
			w.inflight--
			r.cond.Broadcast()
			r.mu.Unlock()
		}
		if unique == 0 {
			// A notification from the worker: to the kernel as is, on its own, because the
			// kernel may hold it until a reply behind it is delivered (an entry invalidation
			// waits for the rename it follows).
			msg := append([]byte(nil), buf[:n]...)
			go func() {
				if err := r.write(msg); err != nil && !errors.Is(err, syscall.ENOENT) {
					r.log.Warn("relay: notification to the kernel failed", "err", err)
				}
			}()
			continue
		}
		if err := r.write(buf[:n]); err != nil && !errors.Is(err, syscall.ENOENT) {
			r.log.Warn("relay: reply to the kernel failed", "err", err)
		}
	}
}

// write sends one message to the kernel with a plain write(2): os.File serializes its
// writers, and a notification the kernel holds must not hold up the replies behind it.
func (r *Relay) write(msg []byte) error {
	for {
		_, err := unix.Write(int(r.dev.Fd()), msg)
		if err != syscall.EINTR {
			return err
		}
	}
}

// watch waits for w to exit; if it was not being replaced, it crashed: start another and hand
// it everything w held.
func (r *Relay) watch(w *worker) {
	<-w.Dead
	r.mu.Lock()
	if w.retiring || r.closing {
		r.mu.Unlock()
		return
	}
	r.crashes++
	if r.cur == w {
		r.cur = nil
	}
	r.mu.Unlock()
	r.log.Error("serving process died; starting another on the same FUSE connection", "pid", w.Pid, "state", w.Cmd.ProcessState.String())
	quit := func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.closing
	}
	child.Retry(r.log, "a serving process", time.Second, quit, func() error {
		nw, err := r.spawn()
		if err != nil {
			return err
		}
		if err := r.replayInit(nw); err != nil {
			nw.Cmd.Process.Kill()
			return err
		}
		r.adopt(w, nw)
		go r.watch(nw)
		r.log.Info("took over the FUSE connection after a crash", "old", w.Pid, "new", nw.Pid)
		return nil
	})
}

// adopt makes nw current and resends to it every request old held.
func (r *Relay) adopt(old, nw *worker) {
	r.mu.Lock()
	var resend [][]byte
	for _, p := range r.inflight {
		if p.w == old {
			p.w = nw
			nw.inflight++
			resend = append(resend, p.msg)
		}
	}
	old.inflight = 0
	r.cur = nw
	r.cond.Broadcast()
	r.mu.Unlock()
	if len(resend) > 0 {
		r.log.Info("resending requests the dead process held", "requests", len(resend))
	}
	for _, m := range resend {
		nw.sock.Write(m)
	}
}

// restart replaces the current worker by a new one (the binary on disk now: an upgrade) with
// no request lost: the new one answers INIT, takes new requests, then the old one drains.
func (r *Relay) restart() error {
	r.mu.Lock()
	old := r.cur
	r.mu.Unlock()
	if old == nil || r.initMsg == nil {
		return errors.New("not serving yet (no worker, or INIT not seen)")
	}
	nw, err := r.spawn()
	if err != nil {
		return err
	}
	if err := r.replayInit(nw); err != nil {
		nw.Cmd.Process.Kill()
		return fmt.Errorf("the new serving process failed; the old one keeps serving: %w", err)
	}
	start := time.Now()
	go r.watch(nw)
	r.mu.Lock()
	old.retiring = true
	r.cur = nw
	r.cond.Broadcast()
	// Every reply broadcasts cond; so does the deadline.
	deadline := time.Now().Add(60 * time.Second)
	wake := time.AfterFunc(time.Until(deadline), func() { r.mu.Lock(); r.cond.Broadcast(); r.mu.Unlock() })
	for old.inflight > 0 && time.Now().Before(deadline) {
		r.cond.Wait()
	}
	wake.Stop()
	left := old.inflight
	if left > 0 {
		// Still unanswered after a minute: the new worker answers them.
		for _, p := range r.inflight {
			if p.w == old {
				p.w = nw
				nw.inflight++
				nw.sock.Write(p.msg)
			}
		}
	}
	r.mu.Unlock()
	old.Stop(15 * time.Second)
	old.sock.Close()
	r.log.Info("restarted the serving process", "old", old.Pid, "new", nw.Pid, "drain", time.Since(start), "handed_over", left)
	return nil
}

// Restart asks the relay for a graceful restart and waits for it.
func (r *Relay) Restart() error {
	reply := make(chan error, 1)
	select {
	case r.restarts <- reply:
		return <-reply
	case <-r.gone:
		return errors.New("the file system is no longer mounted")
	}
}

// Stop ends the current worker (after unmount).
func (r *Relay) Stop() {
	r.mu.Lock()
	r.closing = true
	w := r.cur
	if w != nil {
		w.retiring = true
	}
	r.cond.Broadcast()
	r.mu.Unlock()
	if w != nil {
		w.Stop(15 * time.Second)
	}
}

// CurrentPID returns the serving process's pid.
func (r *Relay) CurrentPID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil {
		return 0
	}
	return r.cur.Pid
}
