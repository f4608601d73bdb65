package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"github.com/basefs/basefs/chunkstore"
	"golang.org/x/sys/unix"
)

// Batch writes many chunks with one durability barrier instead of one fsync each: objects
// go to tmp/ unsynced; Commit syncs the file system once, links every object into place, and
// syncs again. Abort (or a crash before Commit) leaves nothing in the store. Import and the
// cache's persist workers use it.
//
// An object becomes visible under its name only after its bytes are durable (the first
// barrier), so a crash at any point leaves nothing or the whole object; Commit returns only
// after the names are durable too (the second). Batches may commit concurrently with each
// other, with PutChunk and with DeleteChunk: a link never replaces, so of two writers of one
// chunk exactly one creates it and the other finds it whole.
//
// Every batch must end in Commit or Abort: it holds the root open from NewBatch on, so that
// syncfs(2) reports a write-back error of any of its objects however early the kernel hit it
// (syncfs reports only the errors recorded after the descriptor it is given was opened).
type Batch struct {
	s       *Store
	root    *os.File // opened by NewBatch: the barrier's descriptor
	mu      sync.Mutex
	pending map[chunkstore.Digest]string // digest → temp path
	found   bool                         // a put found its chunk in the store already
	done    bool
}

// NewBatch starts a batch.
func (s *Store) NewBatch() (*Batch, error) {
	if s.readOnly {
		return nil, fmt.Errorf("batch: %s is read-only", s)
	}
	root, err := os.Open(s.root)
	if err != nil {
		return nil, fmt.Errorf("batch: %w", err)
	}
	return &Batch{s: s, root: root, pending: make(map[chunkstore.Digest]string)}, nil
}

// PutChunk adds c to the batch unless the store or the batch already has it; added tells
// whether it did. It is safe for concurrent use.
func (b *Batch) PutChunk(ctx context.Context, c *chunkstore.Chunk) (added bool, storedBytes int64, err error) {
	d := c.Digest()
	if ok, err := exists(b.s.ChunkPath(d)); err != nil || ok {
		if ok {
			b.mu.Lock()
			b.found = true
			b.mu.Unlock()
		}
		return false, 0, err
	}
	if err := b.s.reserve(len(c.Data())); err != nil {
		return false, 0, fmt.Errorf("put chunk %s: %w", d.Short(), err)
	}
	b.mu.Lock()
	_, dup := b.pending[d]
	if !dup {
		b.pending[d] = "" // reserve: a concurrent put of the same chunk skips it
	}
	b.mu.Unlock()
	if dup {
		return false, 0, nil
	}
	hdr, payload := chunkstore.EncodeObject(c.Data())
	tmp, err := b.s.writeTemp(hdr[:], payload, false)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil || b.done {
		delete(b.pending, d)
		if err == nil {
			os.Remove(tmp)
			err = errors.New("batch already finished")
		}
		return false, 0, fmt.Errorf("put chunk %s: %w", d.Short(), err)
	}
	b.pending[d] = tmp
	return true, int64(len(hdr) + len(payload)), nil
}

// Commit makes every chunk put into the batch durable and visible, those a put found in the
// store already included. It returns the digests it created (those no concurrent writer
// created first).
//
// A failure leaves none of the batch's objects in the store: an error before the links
// removes every temporary object, one while linking removes what this batch linked. Only
// when the last barrier fails are the (whole) objects left in place, their names perhaps not
// yet durable; the error says so and the caller must not count them as stored.
func (b *Batch) Commit(ctx context.Context) ([]chunkstore.Digest, error) {
	b.mu.Lock()
	first := !b.done
	b.done = true
	pending := b.pending
	b.pending = nil
	found := b.found
	b.mu.Unlock()
	if first {
		defer b.root.Close()
	}
	if len(pending) == 0 {
		if found {
			// The chunks were in the store, perhaps just linked by a writer whose barrier has
			// not completed: one barrier, and they are durable when Commit returns.
			if err := b.s.syncFS(b.root); err != nil {
				return nil, fmt.Errorf("commit: sync %s: %w", b.s.root, err)
			}
		}
		return nil, nil
	}
	// One barrier for all the data, then the names, then a barrier for the names.
	if err := b.s.syncFS(b.root); err != nil {
		abort(pending)
		return nil, fmt.Errorf("commit: sync %s: %w", b.s.root, err)
	}
	var created []chunkstore.Digest
	for d, tmp := range pending {
		if tmp == "" {
			continue // a put still writing when Commit began: it fails (batch already finished)
		}
		ok, err := b.s.install(tmp, b.s.ChunkPath(d), false)
		delete(pending, d)
		if err != nil {
			abort(pending)
			// Roll back what this batch linked, so a failed commit leaves nothing. (A writer
			// that found one of them meanwhile took it as stored; it is fetched again.)
			for _, c := range created {
				os.Remove(b.s.ChunkPath(c))
			}
			return nil, fmt.Errorf("commit chunk %s: %w", d.Short(), err)
		}
		if ok {
			created = append(created, d)
		}
	}
	if err := b.s.syncFS(b.root); err != nil {
		return created, fmt.Errorf("commit: sync %s (the batch's objects are in place but may not be durable): %w", b.s.root, err)
	}
	return created, nil
}

// Abort discards every chunk of the batch.
func (b *Batch) Abort() {
	b.mu.Lock()
	first := !b.done
	b.done = true
	pending := b.pending
	b.pending = nil
	b.mu.Unlock()
	if first {
		b.root.Close()
	}
	abort(pending)
}

func abort(pending map[chunkstore.Digest]string) {
	for _, tmp := range pending {
		if tmp != "" {
			os.Remove(tmp)
		}
	}
}

// syncFS flushes the whole file system holding root (syncfs(2)): one barrier for a batch.
func (s *Store) syncFS(root *os.File) error {
	s.syncs.Add(1)
	for {
		err := syncfs(root)
		if err != syscall.EINTR {
			return err
		}
	}
}

// ReadChunkData reads chunk d's object and returns its uncompressed bytes and how it is
// stored, WITHOUT verifying them: the caller must (the cache hashes them while it derives
// sub-block digests). A damaged object is a *CorruptError.
func (s *Store) ReadChunkData(d chunkstore.Digest) ([]byte, byte, error) {
	p := s.ChunkPath(d)
	obj, err := readObject("chunk", d, p, chunkstore.MaxChunkObjectSize)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, notFound("chunk", d, s.String())
		}
		return nil, 0, err
	}
	data, err := chunkstore.DecodeObject(obj)
	if err != nil {
		return nil, 0, &chunkstore.CorruptError{Digest: d, Where: p, Err: err}
	}
	return data, obj[5], nil
}

// ErrNotRaw is returned by OpenRaw for a chunk stored compressed.
var ErrNotRaw = errors.New("chunk is stored compressed")

// OpenRaw opens chunk d's object file for ranged reads of its uncompressed bytes, when the
// chunk is stored raw (ErrNotRaw otherwise), and returns the descriptor (the caller closes
// it) and the chunk's length. Read payload byte i at file offset chunkstore.ObjectHeaderSize+i
// (PreadFull). The bytes are NOT verified: the caller checks them against sub-block digests
// it derived from verified bytes. A plain descriptor, not an *os.File: sub-block reads keep
// thousands open and pread them on the hot path, where os.File's poller registration and
// locks are pure cost; O_NOATIME where permitted, so reads do not dirty the inode.
func (s *Store) OpenRaw(d chunkstore.Digest) (fd int, n int64, err error) {
	p := s.ChunkPath(d)
	const flags = unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK // see readObject
	fd, err = unix.Open(p, flags|unix.O_NOATIME, 0)
	if err == unix.EPERM { // O_NOATIME needs the file's owner or CAP_FOWNER
		fd, err = unix.Open(p, flags, 0)
	}
	if err != nil {
		if err == unix.ENOENT {
			return -1, 0, notFound("chunk", d, s.String())
		}
		return -1, 0, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, 0, &chunkstore.CorruptError{Digest: d, Where: p, Err: fmt.Errorf("not a regular file (mode %o, %v)", st.Mode, err)}
	}
	var hdr [chunkstore.ObjectHeaderSize]byte
	if err := PreadFull(fd, hdr[:], 0); err != nil {
		unix.Close(fd)
		return -1, 0, &chunkstore.CorruptError{Digest: d, Where: p, Err: err}
	}
	enc, n, err := chunkstore.ParseObjectHeader(hdr[:])
	if err != nil {
		unix.Close(fd)
		return -1, 0, &chunkstore.CorruptError{Digest: d, Where: p, Err: err}
	}
	if enc != chunkstore.EncodingRaw {
		unix.Close(fd)
		return -1, 0, ErrNotRaw
	}
	return fd, n, nil
}

// PreadFull reads len(b) bytes of fd at off; a file that ends first is io.ErrUnexpectedEOF.
func PreadFull(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pread(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &fs.PathError{Op: "pread", Path: fmt.Sprintf("fd %d", fd), Err: err}
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}
