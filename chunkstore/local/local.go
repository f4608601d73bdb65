// Package local is the directory-backed chunk store: the host's local state, and the
// published layout that dir:// and http:// origins read.
//
// Layout under the root:
//
//	chunks/<first 2 hex>/<64 hex>   one chunk object (header + raw or zstd payload)
//	manifests/<64 hex>              one canonical manifest
//	tmp/                            objects being written; anything here after a crash is junk
//
// Writes are atomic: an object is written to tmp/, synced, then linked to its final name (a
// link never replaces, so concurrent writers of one object are safe and exactly one creates
// it), and the directory synced. A crash leaves nothing or the whole object. Every read is
// verified against the object's digest.
package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/chunkstore"
)

// Store is a directory-backed chunkstore.Store.
type Store struct {
	root     string
	readOnly bool
}

var _ chunkstore.Store = (*Store)(nil)

// Options configure Open.
type Options struct {
	// ReadOnly opens an existing layout for reading only (an origin); puts and deletes fail.
	ReadOnly bool
}

// Open opens (and unless ReadOnly, creates) the store rooted at root.
func Open(root string, opts Options) (*Store, error) {
	root = filepath.Clean(root)
	s := &Store{root: root, readOnly: opts.ReadOnly}
	if opts.ReadOnly {
		fi, err := os.Stat(root)
		if err != nil {
			return nil, fmt.Errorf("open store %s: %w", root, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("open store %s: not a directory", root)
		}
		return s, nil
	}
	for _, d := range []string{"chunks", "manifests", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, fmt.Errorf("open store %s: %w (is the state directory writable?)", root, err)
		}
	}
	// Prove the store is writable now rather than halfway through an import.
	f, err := os.CreateTemp(filepath.Join(root, "tmp"), "probe-")
	if err != nil {
		return nil, fmt.Errorf("open store %s: cannot write: %w", root, err)
	}
	f.Close()
	os.Remove(f.Name())
	return s, nil
}

// Root returns the store's directory.
func (s *Store) Root() string { return s.root }

func (s *Store) String() string { return "dir://" + s.root }

// ChunkPath returns the path of chunk d's object file.
func (s *Store) ChunkPath(d chunkstore.Digest) string {
	h := d.String()
	return filepath.Join(s.root, "chunks", h[:2], h)
}

// ManifestPath returns the path of manifest d.
func (s *Store) ManifestPath(d chunkstore.Digest) string {
	return filepath.Join(s.root, "manifests", d.String())
}

func notFound(kind string, d chunkstore.Digest, where string) error {
	return fmt.Errorf("%s %s at %s: %w", kind, d.Short(), where, chunkstore.ErrNotFound)
}

// GetChunk reads and verifies chunk d.
func (s *Store) GetChunk(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	p := s.ChunkPath(d)
	obj, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, notFound("chunk", d, s.String())
		}
		return nil, fmt.Errorf("read chunk %s: %w", d.Short(), err)
	}
	return chunkstore.DecodeChunk(d, obj, p)
}

// HasChunk reports whether chunk d's object exists (it is not read or verified).
func (s *Store) HasChunk(ctx context.Context, d chunkstore.Digest) (bool, error) {
	return exists(s.ChunkPath(d))
}

// ChunkStoredSize returns the size of chunk d's object on disk.
func (s *Store) ChunkStoredSize(d chunkstore.Digest) (int64, error) {
	fi, err := os.Stat(s.ChunkPath(d))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, notFound("chunk", d, s.String())
		}
		return 0, err
	}
	return fi.Size(), nil
}

func exists(p string) (bool, error) {
	_, err := os.Stat(p)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// PutChunk stores c durably unless the store already has it.
func (s *Store) PutChunk(ctx context.Context, c *chunkstore.Chunk) (bool, error) {
	if s.readOnly {
		return false, fmt.Errorf("put chunk %s: %s is read-only", c.Digest().Short(), s)
	}
	p := s.ChunkPath(c.Digest())
	if ok, err := exists(p); err != nil || ok {
		return false, err
	}
	hdr, payload := chunkstore.EncodeObject(c.Data())
	tmp, err := s.writeTemp(hdr[:], payload, true)
	if err != nil {
		return false, fmt.Errorf("put chunk %s: %w", c.Digest().Short(), err)
	}
	created, err := s.install(tmp, p, true)
	if err != nil {
		return false, fmt.Errorf("put chunk %s: %w", c.Digest().Short(), err)
	}
	return created, nil
}

// writeTemp writes hdr and payload to a new file in tmp/ and returns its path; sync fsyncs it.
func (s *Store) writeTemp(hdr, payload []byte, sync bool) (string, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "obj-")
	if err != nil {
		return "", err
	}
	_, err = f.Write(hdr)
	if err == nil {
		_, err = f.Write(payload)
	}
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o444)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// install links tmp to final (never replacing an existing object), removes tmp, and
// optionally syncs final's directory. created is false if final already existed.
func (s *Store) install(tmp, final string, syncDir bool) (created bool, err error) {
	defer os.Remove(tmp)
	dir := filepath.Dir(final)
	err = os.Link(tmp, final)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(dir, 0o755); err == nil {
			err = os.Link(tmp, final)
		}
	}
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if syncDir {
		if err := syncPath(dir); err != nil {
			return true, err
		}
	}
	return true, nil
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// DeleteChunk removes chunk d; removing an absent chunk is not an error.
func (s *Store) DeleteChunk(ctx context.Context, d chunkstore.Digest) error {
	if s.readOnly {
		return fmt.Errorf("delete chunk %s: %s is read-only", d.Short(), s)
	}
	if err := os.Remove(s.ChunkPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete chunk %s: %w", d.Short(), err)
	}
	return nil
}

// QuarantineChunk moves chunk d's object into dir (created if needed) under a unique name and
// returns that path. The chunk is then absent from the store.
func (s *Store) QuarantineChunk(d chunkstore.Digest, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, d.String()+".")
	if err != nil {
		return "", err
	}
	f.Close()
	if err := os.Rename(s.ChunkPath(d), f.Name()); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// GetManifest reads manifest d and checks that it hashes to d.
func (s *Store) GetManifest(ctx context.Context, d chunkstore.Digest) (*chunkstore.Manifest, error) {
	p := s.ManifestPath(d)
	b, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, notFound("manifest", d, s.String())
		}
		return nil, fmt.Errorf("read manifest %s: %w", d.Short(), err)
	}
	m, err := chunkstore.ParseManifestFor(d, b)
	if err != nil {
		var ce *chunkstore.CorruptError
		if errors.As(err, &ce) {
			ce.Where = p
			return nil, ce
		}
		return nil, &chunkstore.CorruptError{Kind: "manifest", Digest: d, Where: p, Err: err}
	}
	return m, nil
}

// HasManifest reports whether manifest d exists.
func (s *Store) HasManifest(ctx context.Context, d chunkstore.Digest) (bool, error) {
	return exists(s.ManifestPath(d))
}

// PutManifest stores m durably (put-if-absent) and returns its digest.
func (s *Store) PutManifest(ctx context.Context, m *chunkstore.Manifest) (chunkstore.Digest, error) {
	d, b, err := m.Digest()
	if err != nil {
		return d, err
	}
	if s.readOnly {
		return d, fmt.Errorf("put manifest %s: %s is read-only", d.Short(), s)
	}
	p := s.ManifestPath(d)
	if ok, err := exists(p); err != nil || ok {
		return d, err
	}
	tmp, err := s.writeTemp(b, nil, true)
	if err != nil {
		return d, fmt.Errorf("put manifest %s: %w", d.Short(), err)
	}
	if _, err := s.install(tmp, p, true); err != nil {
		return d, fmt.Errorf("put manifest %s: %w", d.Short(), err)
	}
	return d, nil
}

// DeleteManifest removes manifest d; removing an absent manifest is not an error.
func (s *Store) DeleteManifest(ctx context.Context, d chunkstore.Digest) error {
	if s.readOnly {
		return fmt.Errorf("delete manifest %s: %s is read-only", d.Short(), s)
	}
	if err := os.Remove(s.ManifestPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete manifest %s: %w", d.Short(), err)
	}
	return nil
}

// WalkChunks calls fn for every chunk object present, in no particular order.
func (s *Store) WalkChunks(ctx context.Context, fn func(chunkstore.Digest) error) error {
	shards, err := os.ReadDir(filepath.Join(s.root, "chunks"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, sh := range shards {
		if !sh.IsDir() || len(sh.Name()) != 2 {
			continue
		}
		if err := walkDir(ctx, filepath.Join(s.root, "chunks", sh.Name()), fn); err != nil {
			return err
		}
	}
	return nil
}

// WalkManifests calls fn for every manifest present.
func (s *Store) WalkManifests(ctx context.Context, fn func(chunkstore.Digest) error) error {
	return walkDir(ctx, filepath.Join(s.root, "manifests"), fn)
}

func walkDir(ctx context.Context, dir string, fn func(chunkstore.Digest) error) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range ents {
		d, err := chunkstore.ParseDigest(e.Name())
		if err != nil {
			continue // not an object (e.g. a stray file); never ours to judge here
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(d); err != nil {
			return err
		}
	}
	return nil
}

// CleanTemp removes leftovers of interrupted writes from tmp/. Call it when no writer runs
// (at daemon start); objects being written by another process would be lost.
func (s *Store) CleanTemp() error {
	ents, err := os.ReadDir(filepath.Join(s.root, "tmp"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		os.RemoveAll(filepath.Join(s.root, "tmp", e.Name()))
	}
	return nil
}

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
