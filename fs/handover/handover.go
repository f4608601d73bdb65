package handover

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

const (
	inHeaderSize  = 40 // fuse_in_header
	outHeaderSize = 16 // fuse_out_header
	opInit        = 26
	notifyResend  = 7 // FUSE_NOTIFY_RESEND (Linux 6.9)
	// initMax bounds the INIT request (its fuse_init_in is 64 bytes today).
	initMax = 4096
)

// ErrNoResend is returned by Probe on a kernel without FUSE_NOTIFY_RESEND.
var ErrNoResend = errors.New("the kernel has no FUSE_NOTIFY_RESEND (Linux ≥ 6.9)")

// Resend asks the kernel to queue again every request of the connection fd that was read and
// not answered (FUSE_NOTIFY_RESEND): after a reader died holding some, whoever reads next
// gets them, with FUSE_UNIQUE_RESEND set in their unique.
func Resend(fd int) error {
	var msg [outHeaderSize]byte
	binary.LittleEndian.PutUint32(msg[0:], outHeaderSize)
	binary.LittleEndian.PutUint32(msg[4:], notifyResend) // error holds the notify code
	for {
		_, err := unix.Write(fd, msg[:])
		if err != syscall.EINTR {
			return err
		}
	}
}

// Probe tells whether the kernel can resend: it sends the notification on a new connection
// before anything was read from it (so there is nothing to resend). A kernel without it
// answers EINVAL: ErrNoResend.
func Probe(dev *os.File) error {
	err := Resend(int(dev.Fd()))
	if errors.Is(err, syscall.EINVAL) {
		return ErrNoResend
	}
	return err
}

// ReadInit reads a new connection's first request, the kernel's INIT.
func ReadInit(dev *os.File) ([]byte, error) {
	buf := make([]byte, 1<<20+4096) // a read from /dev/fuse must offer room for any request
	for {
		n, err := unix.Read(int(dev.Fd()), buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read INIT from the FUSE connection: %w", err)
		}
		if n < inHeaderSize || binary.LittleEndian.Uint32(buf[4:]) != opInit || n > initMax {
			return nil, fmt.Errorf("the FUSE connection's first request is not INIT (%d bytes)", n)
		}
		return append([]byte(nil), buf[:n]...), nil
	}
}

// Attach makes a go-fuse server for the connection fuseFD, which is past INIT: go-fuse must
// see an INIT before anything else, so it is given init (the kernel's INIT, saved when the
// connection was made) on one end of a socket pair, answers it there, and then that end's
// descriptor number is made to refer to the connection itself (dup3): from then on the
// server reads and answers the kernel directly, with no process in between. The INIT answer
// is returned (the first server of a connection sends it to the kernel: WriteInitReply).
// The server is not serving yet: call Serve when it may take requests.
func Attach(init []byte, fuseFD int, newServer func(mountpoint string) (*fuse.Server, error)) (*fuse.Server, []byte, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	mine, theirs := fds[0], fds[1]
	defer unix.Close(mine)
	if _, err := unix.Write(mine, init); err != nil {
		unix.Close(theirs)
		return nil, nil, fmt.Errorf("hand INIT to the server: %w", err)
	}
	srv, err := newServer(fmt.Sprintf("/dev/fd/%d", theirs))
	if err != nil {
		unix.Close(theirs)
		return nil, nil, err
	}
	reply := make([]byte, initMax)
	n, err := unix.Read(mine, reply)
	if err != nil || n < outHeaderSize {
		return nil, nil, fmt.Errorf("the server's INIT answer: %d bytes, %v", n, err)
	}
	// go-fuse reads and writes the descriptor by number, and no reader runs before Serve:
	// the number now names the FUSE connection.
	if err := unix.Dup3(fuseFD, theirs, unix.O_CLOEXEC); err != nil {
		return nil, nil, fmt.Errorf("dup3 the FUSE connection: %w", err)
	}
	return srv, reply[:n], nil
}

// WriteInitReply sends the first server's INIT answer to the kernel.
func WriteInitReply(fuseFD int, reply []byte) error {
	for {
		_, err := unix.Write(fuseFD, reply)
		if err != syscall.EINTR {
			if err != nil {
				return fmt.Errorf("answer the kernel's INIT: %w", err)
			}
			return nil
		}
	}
}

// Alive reports whether the connection fd is still connected (not unmounted or aborted),
// without reading from it.
func Alive(fd int) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: 0}}
	for {
		n, err := unix.Poll(p, 0)
		if err == syscall.EINTR {
			continue
		}
		return err == nil && (n == 0 || p[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) == 0)
	}
}

// LockMemory keeps every page of this process resident, now and as it grows (mlockall), so
// the kernel never takes a page fault copying a request into a reader's buffer or a reply
// out of one. That matters when the process is killed: a copy that must fault while a fatal
// signal is pending is abandoned and the kernel fails that request with EIO, where a copy
// that completes leaves the request held, to be resent to the next process. Locking only on
// fault is not enough: the Go runtime gives freed heap back by mapping it anew, and a fresh
// mapping faults again. The cost: the heap's peak stays resident, and so does each thread's
// stack (8 MiB each for threads made by the C library, see the Makefile's build tags).
func LockMemory() error {
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE); err != nil {
		return fmt.Errorf("mlockall: %w", err)
	}
	return nil
}

// Mount opens /dev/fuse and mounts it at mnt as basefs: allow_other, default permissions,
// 1 MiB reads; read-write (images refuse writes themselves; every other name is a local
// file). The returned file is the connection; nothing has been read from it (Probe, ReadInit).
func Mount(mnt string) (*os.File, error) {
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/fuse: %w", err)
	}
	data := fmt.Sprintf("fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions,max_read=%d", fd, 1<<20)
	if err := unix.Mount("basefs", mnt, "fuse.basefs", unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mount %s: %w (needs root and /dev/fuse)", mnt, err)
	}
	return os.NewFile(uintptr(fd), "/dev/fuse"), nil
}
