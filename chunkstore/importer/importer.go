// Package importer turns a disk image file into chunks and a manifest in a local store.
//
// The file is inspected first (package inspect, nova's rules): an image nova would refuse is
// refused before qemu-img sees it. Raw images are read directly; other formats are converted
// with `qemu-img convert -O raw`, told the detected format and following nothing (qemuimg.go),
// into a temporary file inside the store's tmp/ directory, which is always removed; every
// qemu-img runs through package child (scrubbed environment, Pdeathsig, limits). Limits
// (space.go) bound the virtual size and keep a free-space reserve, watched while converting. The
// raw bytes are cut into aligned chunks; regions the file system reports as holes (SEEK_DATA)
// and all-zero chunks become hole entries and are never stored. Chunks are hashed by a pool of
// workers (one per CPU), each with its own buffer, so memory is bounded by workers × chunk
// size. Chunks are written through a local.Batch: nothing is visible in the store until every
// chunk is durable, and a failed import leaves nothing behind.
package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/inspect"
	"github.com/basefs/basefs/chunkstore/local"
)

// Options configure an import.
type Options struct {
	ChunkSize int64 // 0 means chunkstore.DefaultChunkSize
	Workers   int   // 0 means one per CPU
	// Source is recorded in the manifest as given. A local file's container format is not
	// part of the content and is not recorded, so a raw image and a qcow2 made from it get
	// the same digest; origins that name their data (Glance) fill Source in.
	Source chunkstore.Source
	// Format is the image's format as its origin declares it, in Glance's names (raw,
	// qcow2, vmdk, vhd, vhdx, vdi, iso, ami/ari/aki): the content must match it (package
	// inspect's rules). "" declares nothing: the detected format is used.
	Format string
	// Verbatim imports the file's bytes as they are (nova's finished download, adopted):
	// inspected and refused if unsafe like any image, but never converted.
	Verbatim bool
	// Limits bound the import's size, time and disk use (zero fields: no bound).
	Limits Limits
	// Progress, when set, is called with bytes done and total as chunks complete.
	Progress func(done, total int64)
}

// Result describes a finished import.
type Result struct {
	Digest        chunkstore.Digest `json:"digest"`
	Size          int64             `json:"size"`
	Format        string            `json:"format"`
	ChunkSize     int64             `json:"chunk_size"`
	Chunks        int               `json:"chunks"`
	Holes         int               `json:"holes"`
	ChunksStored  int               `json:"chunks_stored"`
	BytesStored   int64             `json:"bytes_stored"`
	ManifestAdded bool              `json:"manifest_added"`
}

// Import imports the image at path into s. The file is inspected first (package inspect):
// an image nova would refuse is refused (an error wrapping inspect.ErrRefused) before
// qemu-img sees it, and qemu-img is then told the detected format and follows nothing.
// Nothing is kept on any failure.
func Import(ctx context.Context, s *local.Store, path string, opts Options) (*Result, error) {
	if opts.ChunkSize == 0 {
		opts.ChunkSize = chunkstore.DefaultChunkSize
	}
	if err := chunkstore.ValidChunkSize(opts.ChunkSize); err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0 {
		return nil, fmt.Errorf("import %s: not a regular file or block device", path)
	}
	verdict, err := inspect.CheckFile(path, opts.Format)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	format := verdict.QemuFormat
	if opts.Verbatim {
		format = "raw"
	}
	lim := opts.Limits
	tmpDir := filepath.Join(s.Root(), "tmp")
	if err := CheckFree(tmpDir, 0, lim.MinFree); err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	info, err := Inspect(ctx, path, format)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	if info.VirtualSize <= 0 {
		return nil, fmt.Errorf("import %s: the image is empty (virtual size %d): nothing to import", path, info.VirtualSize)
	}
	if info.VirtualSize > chunkstore.MaxImageSize || (lim.MaxSize > 0 && info.VirtualSize > lim.MaxSize) {
		return nil, fmt.Errorf("import %s: %w", path, &inspect.Refusal{Format: verdict.Format, DiskFormat: opts.Format,
			Reason: fmt.Sprintf("virtual size %d is larger than the largest accepted (--max-image-size %d)", info.VirtualSize, min(max(lim.MaxSize, 0), chunkstore.MaxImageSize))})
	}
	gctx, stop := guard(ctx, tmpDir, lim.MinFree)
	defer stop()
	rawPath := path
	if format != "raw" {
		tmp, err := os.CreateTemp(tmpDir, "import-*.raw")
		if err != nil {
			return nil, fmt.Errorf("import %s: temporary file for conversion: %w", path, err)
		}
		tmp.Close()
		defer os.Remove(tmp.Name())
		if err := convert(gctx, path, format, tmp.Name(), lim.ConvertTimeout); err != nil {
			if cause := context.Cause(gctx); cause != nil && errors.Is(cause, ErrNoSpace) {
				err = cause
			}
			return nil, fmt.Errorf("import %s: convert %s to raw: %w", path, format, err)
		}
		rawPath = tmp.Name()
	}
	res, err := importRaw(gctx, s, rawPath, info.VirtualSize, opts)
	if err != nil {
		if cause := context.Cause(gctx); cause != nil && errors.Is(cause, ErrNoSpace) {
			err = cause
		}
		return nil, fmt.Errorf("import %s: %w", path, err)
	}
	res.Format = verdict.Format
	return res, nil
}

// importRaw chunks the raw file at path (of exactly size bytes) into s.
func importRaw(ctx context.Context, s *local.Store, path string, size int64, opts Options) (*Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// A writer of references (local/refs.go): from the first chunk written or found present
	// until the manifest is durable.
	unlock, err := s.ShareRefs(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// qemu sees a raw file rounded up to whole 512-byte sectors (and qemu-img convert writes
	// that size), so the image is the virtual size qemu-img reports; the tail past the end
	// of a raw file reads as zeros.
	fileSize := size
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		fileSize = fi.Size()
		if fileSize > size || size-fileSize >= 512 {
			return nil, fmt.Errorf("raw data is %d bytes, qemu-img says the image is %d", fileSize, size)
		}
	}
	cs := opts.ChunkSize
	n := chunkstore.NumChunks(size, cs)
	m := &chunkstore.Manifest{Size: size, ChunkSize: cs, Chunks: make([]chunkstore.Digest, n), Source: opts.Source}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	batch, err := s.NewBatch()
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			batch.Abort()
		}
	}()

	var next, done atomic.Int64
	var stored atomic.Int64
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for range workers {
		g.Go(func() error {
			buf := make([]byte, cs)
			for {
				i := next.Add(1) - 1
				if i >= n {
					return nil
				}
				if err := gctx.Err(); err != nil {
					return err
				}
				off := i * cs
				b := buf[:min(cs, size-off)]
				if off >= fileSize || isHole(f, off, int64(len(b))) {
					reportProgress(opts.Progress, &done, int64(len(b)), size, &mu)
					continue // m.Chunks[i] stays zero: a hole
				}
				nr, err := f.ReadAt(b, off)
				if err != nil && !(errors.Is(err, io.EOF) && off+int64(nr) == fileSize) {
					return fmt.Errorf("read at %d: %w", off, err)
				}
				clear(b[nr:]) // the sector-rounding tail
				if !chunkstore.IsZeroes(b) {
					c := chunkstore.NewChunk(b)
					m.Chunks[i] = c.Digest()
					_, nb, err := batch.PutChunk(gctx, c)
					if err != nil {
						return err
					}
					stored.Add(nb)
				}
				reportProgress(opts.Progress, &done, int64(len(b)), size, &mu)
			}
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	created, err := batch.Commit(ctx)
	if err != nil {
		return nil, err
	}
	committed = true
	had, err := s.HasManifest(ctx, mustDigest(m))
	if err == nil {
		_, err = s.PutManifest(ctx, m)
	}
	if err != nil {
		// Roll back: the chunks this import created are referenced by nothing.
		for _, d := range created {
			s.DeleteChunk(context.WithoutCancel(ctx), d)
		}
		return nil, err
	}
	d := mustDigest(m)
	return &Result{
		Digest: d, Size: size, ChunkSize: cs, Chunks: int(n), Holes: m.Holes(),
		ChunksStored: len(created), BytesStored: storedBytes(s, created, stored.Load()),
		ManifestAdded: !had,
	}, nil
}

func mustDigest(m *chunkstore.Manifest) chunkstore.Digest {
	d, _, err := m.Digest()
	if err != nil {
		panic(err) // m was built valid above
	}
	return d
}

// storedBytes returns the on-disk bytes of the created chunks (the batch's count includes
// chunks a concurrent writer beat us to; when all were ours, it is exact already).
func storedBytes(s *local.Store, created []chunkstore.Digest, batchBytes int64) int64 {
	var n int64
	for _, d := range created {
		sz, err := s.ChunkStoredSize(d)
		if err != nil {
			return batchBytes
		}
		n += sz
	}
	return n
}

func reportProgress(p func(int64, int64), done *atomic.Int64, n, total int64, mu *sync.Mutex) {
	v := done.Add(n)
	if p != nil {
		mu.Lock()
		p(v, total)
		mu.Unlock()
	}
}

// isHole reports whether [off, off+n) of f has no data according to the file system
// (SEEK_DATA), so it reads as zeros without being read.
func isHole(f *os.File, off, n int64) bool {
	next, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return true // no data at or after off
	}
	return err == nil && next >= off+n
}
