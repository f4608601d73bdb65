package local

import (
	"os"

	"golang.org/x/sys/unix"
)

// The system calls that make objects durable and visible. They are variables only so that
// this package's tests can fail them and record their order (fault injection); nothing else
// replaces them.
var (
	fsync  = func(f *os.File) error { return f.Sync() }
	syncfs = func(f *os.File) error { return unix.Syncfs(int(f.Fd())) }
	link   = os.Link
)
