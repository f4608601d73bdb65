package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// The reference lock: one rule for everything that writes references to chunks and for the
// collector that deletes chunks no reference names.
//
// A writer of references — whatever writes a chunk or finds one present and then writes a
// manifest naming it (an import, nova's adoption of a download, a completed Glance image) —
// holds the shared side (ShareRefs) from before its first chunk is written or found present
// until its manifest, and any name it records, is durable. The collector (cleanup, nova's
// unlink, the capacity bound) holds the exclusive side (ExclusiveRefs) from before it reads
// which chunks the manifests reference until its last delete. So a chunk a writer found
// present is never deleted before the manifest that references it exists, and a chunk a writer
// wrote is never taken for an orphan. Writers do not wait for each other.
//
// The lock is flock(2) on <root>/refs.lock, so it holds across processes (`basefs import`
// beside a daemon) and is released by the kernel when its holder dies. flock grants a shared
// lock whenever no exclusive one is held (waiting exclusive requests do not block it), so a
// writer may take the shared side again while holding it.

// ShareRefs takes the shared side of the reference lock and returns its release. It waits for
// a collector that holds the exclusive side, or until ctx ends.
func (s *Store) ShareRefs(ctx context.Context) (func(), error) { return s.lockRefs(ctx, unix.LOCK_SH) }

// ExclusiveRefs takes the exclusive side of the reference lock and returns its release. It
// waits for every writer that holds the shared side, or until ctx ends.
func (s *Store) ExclusiveRefs(ctx context.Context) (func(), error) {
	return s.lockRefs(ctx, unix.LOCK_EX)
}

func (s *Store) lockRefs(ctx context.Context, how int) (func(), error) {
	p := filepath.Join(s.root, "refs.lock")
	// Each holder opens the file anew: flock locks belong to an open file description, so
	// holders in one process exclude each other as holders in two processes do.
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil && s.readOnly {
		f, err = os.Open(p)
	}
	if err != nil {
		return nil, fmt.Errorf("reference lock %s: %w", p, err)
	}
	got := make(chan error, 1)
	go func() { got <- unix.Flock(int(f.Fd()), how) }()
	release := func() { f.Close() } // closing the last descriptor releases the lock
	select {
	case err := <-got:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("reference lock %s: %w", p, err)
		}
		return release, nil
	case <-ctx.Done():
		go func() { <-got; f.Close() }() // taken later or failed: let it go either way
		return nil, fmt.Errorf("reference lock %s: %w", p, ctx.Err())
	}
}
