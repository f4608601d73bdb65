package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/daemon/control"
)

// Who may use the control socket: root and the daemon's owner (nova-compute's user), told
// by the kernel (SO_PEERCRED on the accepted connection), whatever the socket file's mode.
// The file is created 0600 (Listen) as a first line; the peer check holds even if someone
// loosens it.

type peerKey struct{}

// peerCred returns the credentials of the process at the other end of c (nil: not a unix
// socket, or the kernel would not say).
func peerCred(c net.Conn) *unix.Ucred {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil
	}
	var cred *unix.Ucred
	rc.Control(func(fd uintptr) { cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	return cred
}

// allowPeers wraps h: a request from a peer that is neither root nor owner gets 403 and
// nothing else (no status, no fetch, no profile).
func (s *Server) allowPeers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred := peerOf(r)
		if cred == nil || (cred.Uid != 0 && cred.Uid != s.Owner) {
			uid := "unknown"
			if cred != nil {
				uid = fmt.Sprint(cred.Uid)
			}
			s.log().Warn("control socket: request refused: the peer is neither root nor the owner", "uid", uid, "owner", s.Owner, "path", r.URL.Path)
			reply(w, http.StatusForbidden, control.ErrorReply{Error: fmt.Sprintf("basefs control socket: uid %s may not use it (only root and the owner, uid %d: basefs mount --owner)", uid, s.Owner)})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// peerOf returns the credentials of the process that made request r (nil: unknown).
func peerOf(r *http.Request) *unix.Ucred {
	cred, _ := r.Context().Value(peerKey{}).(*unix.Ucred)
	return cred
}

func withPeer(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, peerKey{}, peerCred(c))
}

// Listen creates the control socket at path, mode 0600 from the moment it exists (the
// process umask is narrowed around bind: a chmod afterwards leaves a window in which anyone
// may connect), owned by uid (root's socket when 0). A socket file left by a dead daemon is
// replaced.
func Listen(path string, uid uint32) (*net.UnixListener, error) {
	os.Remove(path)
	old := syscall.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if uid != 0 {
		// From root's socket to the owner's: nobody else can connect meanwhile.
		if err := os.Lchown(path, int(uid), -1); err != nil {
			l.Close()
			return nil, fmt.Errorf("control socket %s: give it to the owner (uid %d): %w", path, uid, err)
		}
	}
	return l, nil
}
