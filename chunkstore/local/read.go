package local

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/chunkstore"
)

// MaxManifestSize bounds a manifest object read from a directory (a 1 PiB image at 4 MiB
// chunks has a ~9 MiB manifest).
const MaxManifestSize = 256 << 20

// readObject reads the object file at p: a regular file (a FIFO, a device or a symbolic link
// planted in a directory origin is refused as corrupt, never opened for reading: O_NONBLOCK keeps a
// FIFO's open from waiting for a writer) of at most max bytes, checked before anything is
// allocated. An absent file wraps fs.ErrNotExist.
func readObject(kind string, d chunkstore.Digest, p string, max int64) ([]byte, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err == unix.ELOOP {
		return nil, &chunkstore.CorruptError{Kind: kind, Digest: d, Where: p, Err: errors.New("a symbolic link, not an object file")}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: p, Err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, &chunkstore.CorruptError{Kind: kind, Digest: d, Where: p, Err: fmt.Errorf("not a regular file (mode %o)", st.Mode)}
	}
	if st.Size > max {
		return nil, &chunkstore.CorruptError{Kind: kind, Digest: d, Where: p, Err: fmt.Errorf("%d bytes, more than the %d a %s may have", st.Size, max, kind)}
	}
	b := make([]byte, st.Size)
	n, err := io.ReadFull(io.LimitReader(f, st.Size), b)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return b[:n], nil
}
