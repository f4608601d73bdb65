package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
)

// extent is a run of pseudo-random data in an otherwise sparse image.
type extent struct{ Off, Len int64 }

// dataBytes sums the extents' lengths.
func dataBytes(xs []extent) int64 {
	var n int64
	for _, x := range xs {
		n += x.Len
	}
	return n
}

// writeImage writes a raw image of size bytes: pseudo-random data (ChaCha8 from seed) in the
// extents, holes elsewhere. The file is world-readable (qemu runs as another user).
func writeImage(path string, size int64, seed uint64, extents []extent) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	r := rand.NewChaCha8(s)
	buf := make([]byte, 4*MiB)
	for _, x := range extents {
		for done := int64(0); done < x.Len; {
			n := min(int64(len(buf)), x.Len-done)
			r.Read(buf[:n])
			if _, err := f.WriteAt(buf[:n], x.Off+done); err != nil {
				f.Close()
				return err
			}
			done += n
		}
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// prefixSHA256 returns the hex SHA-256 of the first n bytes of a file.
func prefixSHA256(path string, n int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, n); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// importResult is what `basefs import --json` prints.
type importResult struct {
	Digest       string `json:"digest"`
	Size         int64  `json:"size"`
	ChunkSize    int64  `json:"chunk_size"`
	Chunks       int    `json:"chunks"`
	Holes        int    `json:"holes"`
	ChunksStored int    `json:"chunks_stored"`
	BytesStored  int64  `json:"bytes_stored"`
}

// importImage imports file into the state directory with `basefs import` (and its extra
// flags, such as --chunk-size).
func (e *env) importImage(ctx context.Context, state, file string, extra ...string) (*importResult, error) {
	args := append(append([]string{"import", "--state", state, "--json"}, extra...), file)
	out, err := command(ctx, e.basefs, args...)
	if err != nil {
		return nil, err
	}
	var r importResult
	if err := json.Unmarshal(bytes.TrimSpace(out), &r); err != nil || len(r.Digest) != 64 {
		return nil, fmt.Errorf("basefs import --json: unexpected output %q: %v", tail(string(out), 300), err)
	}
	return &r, nil
}

// denseImage writes the read scenarios' image at raw (Options.ReadSize of pseudo-random data
// from seed, no holes) and imports it into state.
func (e *env) denseImage(ctx context.Context, raw, state string, seed uint64) (*importResult, error) {
	e.logf("writing a %s image", sizeText(e.opts.ReadSize))
	if err := writeImage(raw, e.opts.ReadSize, seed, []extent{{0, e.opts.ReadSize}}); err != nil {
		return nil, err
	}
	return e.importImage(ctx, state, raw)
}

// publish copies images from state into a published layout at dir with `basefs publish`.
func (e *env) publish(ctx context.Context, state, dir string, digests ...string) error {
	args := append([]string{"publish", "--state", state, "--to", "dir://" + dir}, digests...)
	_, err := command(ctx, e.basefs, args...)
	return err
}

// importPublished imports file into state (importImage) and publishes it into the layout
// at pub, as an origin serves it.
func (e *env) importPublished(ctx context.Context, state, pub, file string, extra ...string) (*importResult, error) {
	imp, err := e.importImage(ctx, state, file, extra...)
	if err != nil {
		return nil, err
	}
	if err := e.publish(ctx, state, pub, imp.Digest); err != nil {
		return nil, err
	}
	return imp, nil
}

// treeBytes sums the apparent sizes of the regular files under dir.
func treeBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// allocatedBytes returns the bytes a file occupies on disk (st_blocks).
func allocatedBytes(path string) (int64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Blocks * 512, nil
}

// download fetches url into path as nova's image download does (the whole body, in order),
// except that all-zero MiB blocks are skipped rather than written, so the file is sparse: a
// help to the baseline (less disk I/O), which costs it no time on the wire. It returns the
// body's length.
func download(ctx context.Context, url, path string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	buf := make([]byte, MiB)
	zero := make([]byte, MiB)
	var off int64
	for {
		n, rerr := io.ReadFull(resp.Body, buf)
		if n > 0 {
			if !bytes.Equal(buf[:n], zero[:n]) {
				if _, err := f.WriteAt(buf[:n], off); err != nil {
					f.Close()
					return off, err
				}
			}
			off += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			f.Close()
			return off, fmt.Errorf("GET %s: %w", url, rerr)
		}
	}
	if resp.ContentLength >= 0 && off != resp.ContentLength {
		f.Close()
		return off, fmt.Errorf("GET %s: %d bytes, want %d", url, off, resp.ContentLength)
	}
	if err := f.Truncate(off); err != nil {
		f.Close()
		return off, err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return off, err
	}
	return off, f.Close()
}
