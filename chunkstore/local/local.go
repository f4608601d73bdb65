// Package local is the directory-backed chunk store: the host's local state, and the
// published layout that dir:// and http:// origins read.
//
// Layout under the root:
//
//	chunks/<first 2 hex>/<64 hex>   one chunk object (header + raw or zstd payload)
//	manifests/<64 hex>              one canonical manifest
//	tmp/                            objects being written; anything here after a crash is junk
//	refs.lock                       the reference lock (refs.go): writers of manifests share it,
//	                                whoever deletes chunks holds it alone; never removed
//
// Writes are atomic: an object is written to tmp/, synced, then linked to its final name (a
// link never replaces, so concurrent writers of one object are safe and exactly one creates
// it), and the directory synced. A Batch (batch.go) makes many objects durable with one
// syncfs before their links and one after. A crash leaves nothing or the whole object. Every
// read is verified against the object's digest. Deletes of manifests are synced at once;
// deletes of chunks when the deleter calls SyncChunkDirs.
package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/basefs/basefs/chunkstore"
)

// Store is a directory-backed chunkstore.Store.
type Store struct {
	root     string
	readOnly bool
	syncs    atomic.Int64 // fsync and syncfs calls (Syncs)
	minFree  int64
}

var _ chunkstore.Store = (*Store)(nil)

// Options configure Open.
type Options struct {
	// ReadOnly opens an existing layout for reading only (an origin); puts and deletes fail.
	ReadOnly bool
	// MinFree is the free space chunk writes leave on the store's filesystem (nova's
	// ephemeral files share it): a put that would go below it fails with ErrNoSpace. 0: none.
	MinFree int64
}

// Open opens (and unless ReadOnly, creates) the store rooted at root.
func Open(root string, opts Options) (*Store, error) {
	root = filepath.Clean(root)
	s := &Store{root: root, readOnly: opts.ReadOnly, minFree: opts.MinFree}
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

// Syncs returns how many durability barriers (fsync of an object or a directory, syncfs of a
// batch) the store has asked the kernel for: the price of durability, which benchmarks report
// per chunk.
func (s *Store) Syncs() int64 { return s.syncs.Load() }

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
	obj, err := readObject("chunk", d, p, chunkstore.MaxChunkObjectSize)
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
	if err := s.reserve(len(c.Data())); err != nil {
		return false, fmt.Errorf("put chunk %s: %w", c.Digest().Short(), err)
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
		s.syncs.Add(1)
		err = fsync(f)
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
	err = link(tmp, final)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(dir, 0o755); err == nil {
			err = link(tmp, final)
		}
	}
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if syncDir {
		if err := s.syncPath(dir); err != nil {
			return true, err
		}
	}
	return true, nil
}

func (s *Store) syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	s.syncs.Add(1)
	return fsync(f)
}

// SyncChunkDirs makes the deletions of chunks ds durable: it syncs each directory they were in
// once (DeleteChunk does not, so that a collector deleting many pays one barrier per shard).
func (s *Store) SyncChunkDirs(ds []chunkstore.Digest) error {
	seen := make(map[string]bool)
	for _, d := range ds {
		dir := filepath.Dir(s.ChunkPath(d))
		if seen[dir] {
			continue
		}
		seen[dir] = true
		if err := s.syncPath(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sync %s after deletes: %w", dir, err)
		}
	}
	return nil
}

// DeleteChunk removes chunk d; removing an absent chunk is not an error (SyncChunkDirs makes
// deletions durable).
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
	b, err := readObject("manifest", d, p, MaxManifestSize)
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
	if err := os.Remove(s.ManifestPath(d)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("delete manifest %s: %w", d.Short(), err)
	}
	// Durable before any chunk of it goes: a crash never brings back a manifest whose
	// chunks were deleted.
	if err := s.syncPath(filepath.Dir(s.ManifestPath(d))); err != nil {
		return fmt.Errorf("delete manifest %s: sync its directory: %w", d.Short(), err)
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
