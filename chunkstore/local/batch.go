package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"github.com/basefs/basefs/chunkstore"
	"golang.org/x/sys/unix"
)

// Batch writes many chunks with one durability barrier instead of one fsync each: objects
// go to tmp/ unsynced; Commit syncs the file system once, links every object into place, and
// syncs again. Abort (or a crash before Commit) leaves nothing in the store. Import uses it.
type Batch struct {
	s       *Store
	mu      sync.Mutex
	pending map[chunkstore.Digest]string // digest → temp path
	done    bool
}

// NewBatch starts a batch.
func (s *Store) NewBatch() (*Batch, error) {
	if s.readOnly {
		return nil, fmt.Errorf("batch: %s is read-only", s)
	}
	return &Batch{s: s, pending: make(map[chunkstore.Digest]string)}, nil
}

// PutChunk adds c to the batch unless the store or the batch already has it; added tells
// whether it did. It is safe for concurrent use.
func (b *Batch) PutChunk(ctx context.Context, c *chunkstore.Chunk) (added bool, storedBytes int64, err error) {
	d := c.Digest()
	if ok, err := exists(b.s.ChunkPath(d)); err != nil || ok {
		return false, 0, err
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

// Commit makes every chunk of the batch durable and visible. It returns the digests it
// created (those no concurrent writer created first).
func (b *Batch) Commit(ctx context.Context) ([]chunkstore.Digest, error) {
	b.mu.Lock()
	b.done = true
	pending := b.pending
	b.pending = nil
	b.mu.Unlock()
	if len(pending) == 0 {
		return nil, nil
	}
	// One barrier for all the data, then the names, then a barrier for the names.
	if err := syncFS(b.s.root); err != nil {
		abort(pending)
		return nil, fmt.Errorf("commit: sync %s: %w", b.s.root, err)
	}
	var created []chunkstore.Digest
	for d, tmp := range pending {
		ok, err := b.s.install(tmp, b.s.ChunkPath(d), false)
		delete(pending, d)
		if err != nil {
			abort(pending)
			// Roll back what this batch linked, so a failed commit leaves nothing.
			for _, c := range created {
				os.Remove(b.s.ChunkPath(c))
			}
			return nil, fmt.Errorf("commit chunk %s: %w", d.Short(), err)
		}
		if ok {
			created = append(created, d)
		}
	}
	if err := syncFS(b.s.root); err != nil {
		return created, fmt.Errorf("commit: sync %s: %w", b.s.root, err)
	}
	return created, nil
}

// Abort discards every chunk of the batch.
func (b *Batch) Abort() {
	b.mu.Lock()
	b.done = true
	pending := b.pending
	b.pending = nil
	b.mu.Unlock()
	abort(pending)
}

func abort(pending map[chunkstore.Digest]string) {
	for _, tmp := range pending {
		if tmp != "" {
			os.Remove(tmp)
		}
	}
}

// syncFS flushes the whole file system holding dir (syncfs(2)): one barrier for a batch.
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		err := unix.Syncfs(int(f.Fd()))
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
	obj, err := os.ReadFile(p)
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
// chunk is stored raw (ErrNotRaw otherwise), and returns its length. Read payload byte i at
// file offset chunkstore.ObjectHeaderSize+i. The bytes are NOT verified: the caller checks
// them against sub-block digests it derived from verified bytes.
func (s *Store) OpenRaw(d chunkstore.Digest) (*os.File, int64, error) {
	f, err := os.Open(s.ChunkPath(d))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, notFound("chunk", d, s.String())
		}
		return nil, 0, err
	}
	var hdr [chunkstore.ObjectHeaderSize]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		f.Close()
		return nil, 0, &chunkstore.CorruptError{Digest: d, Where: f.Name(), Err: err}
	}
	enc, n, err := chunkstore.ParseObjectHeader(hdr[:])
	if err != nil {
		f.Close()
		return nil, 0, &chunkstore.CorruptError{Digest: d, Where: f.Name(), Err: err}
	}
	if enc != chunkstore.EncodingRaw {
		f.Close()
		return nil, 0, ErrNotRaw
	}
	return f, n, nil
}
