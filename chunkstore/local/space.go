package local

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrNoSpace is wrapped when a write would take the state filesystem below its reserve.
var ErrNoSpace = errors.New("the state filesystem is at its free-space reserve (--min-free)")

// FreeBytes returns the bytes available to unprivileged writers on the filesystem of dir.
func FreeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// CheckFree fails with ErrNoSpace when writing need more bytes under dir would leave less
// than minFree available.
func CheckFree(dir string, need, minFree int64) error {
	if minFree <= 0 && need <= 0 {
		return nil
	}
	free, err := FreeBytes(dir)
	if err != nil {
		return fmt.Errorf("free space of %s: %w", dir, err)
	}
	if free-need < minFree {
		return fmt.Errorf("%w: %s has %d bytes free, %d needed, %d kept", ErrNoSpace, dir, free, need, minFree)
	}
	return nil
}

// reserve checks that n more bytes keep the store's reserve (one statfs: ~1 µs a chunk).
func (s *Store) reserve(n int) error {
	if s.minFree <= 0 {
		return nil
	}
	return CheckFree(s.root, int64(n), s.minFree)
}
