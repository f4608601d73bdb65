package glance

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/importer"
	"github.com/basefs/basefs/chunkstore/inspect"
	"github.com/basefs/basefs/chunkstore/local"
)

// CheckDiskFormat refuses, before any byte is fetched, a Glance disk_format basefs never
// serves: those nova refuses (qed always; ploop and others it has no inspector for). The
// content is checked against the format later (package inspect).
func CheckDiskFormat(diskFormat string) error {
	switch diskFormat {
	case "raw", "qcow2", "vmdk", "vdi", "vhd", "vhdx", "iso", "ami", "ari", "aki":
		return nil
	}
	return fmt.Errorf("%w: disk format %q cannot be served as a raw disk (basefs reads what nova accepts: raw, qcow2, vmdk, vdi, vhd, vhdx, iso, ami/ari/aki)", ErrUnusable, diskFormat)
}

// Verifier hashes image data as it streams by and checks it against the image's
// os_hash_value (with os_hash_algo) and checksum (MD5). At least one of them must be set.
type Verifier struct {
	im   *Image
	algo hash.Hash
	md5  hash.Hash
	n    int64
}

// NewVerifier returns a Verifier for im's data.
func NewVerifier(im *Image) (*Verifier, error) {
	v := &Verifier{im: im}
	switch im.HashAlgo {
	case "":
	case "sha512":
		v.algo = sha512.New()
	case "sha384":
		v.algo = sha512.New384()
	case "sha256":
		v.algo = sha256.New()
	default:
		return nil, fmt.Errorf("%w: image %s: unknown os_hash_algo %q", ErrUnusable, im.ID, im.HashAlgo)
	}
	if im.HashValue == "" {
		v.algo = nil
	}
	if im.Checksum != "" {
		v.md5 = md5.New()
	}
	if v.algo == nil && v.md5 == nil {
		return nil, fmt.Errorf("%w: image %s has neither os_hash_value nor checksum: its data cannot be verified", ErrUnusable, im.ID)
	}
	return v, nil
}

// Write hashes p.
func (v *Verifier) Write(p []byte) (int, error) {
	if v.algo != nil {
		v.algo.Write(p)
	}
	if v.md5 != nil {
		v.md5.Write(p)
	}
	v.n += int64(len(p))
	return len(p), nil
}

// Check compares what was written with the image's size and hashes.
func (v *Verifier) Check() error {
	if v.n != v.im.Size {
		return fmt.Errorf("%w: image %s: %d bytes, Glance says %d", ErrHashMismatch, v.im.ID, v.n, v.im.Size)
	}
	if v.algo != nil {
		if got := hex.EncodeToString(v.algo.Sum(nil)); got != v.im.HashValue {
			return fmt.Errorf("%w: image %s: %s of the data is %s…, os_hash_value is %s…", ErrHashMismatch, v.im.ID, v.im.HashAlgo, got[:16], trunc16(v.im.HashValue))
		}
	}
	if v.md5 != nil {
		if got := hex.EncodeToString(v.md5.Sum(nil)); got != v.im.Checksum {
			return fmt.Errorf("%w: image %s: md5 of the data is %s, checksum is %s", ErrHashMismatch, v.im.ID, got, v.im.Checksum)
		}
	}
	return nil
}

func trunc16(s string) string {
	if len(s) > 16 {
		return s[:16]
	}
	return s
}

// Source returns the manifest source of a Glance image.
func (im *Image) Source() chunkstore.Source {
	return chunkstore.Source{Format: im.DiskFormat, GlanceID: im.ID, HashAlgo: im.HashAlgo, HashValue: im.HashValue}
}

// Import streams image id from Glance once into a temporary file under the store's tmp/,
// checking the stream against os_hash_value and checksum, inspects it (an image nova would
// refuse, or whose content is not its disk_format, is refused: inspect.ErrRefused), converts
// it to raw with qemu-img if it is not raw (told the format, following nothing), and chunks it
// into s with the image's Source recorded in the manifest. Any failure — unknown id, an
// image not active or not bare, Glance down, a hash mismatch — keeps nothing. opts.Source
// and opts.Format are set from Glance.
func Import(ctx context.Context, c *Client, s *local.Store, id string, opts importer.Options) (*importer.Result, *Image, error) {
	im, err := c.Image(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if err := im.Usable(); err != nil {
		return nil, im, err
	}
	if err := CheckDiskFormat(im.DiskFormat); err != nil {
		return nil, im, err
	}
	if lim := opts.Limits.MaxSize; lim > 0 && im.Size > lim {
		return nil, im, fmt.Errorf("image %s: %w", id, &inspect.Refusal{DiskFormat: im.DiskFormat,
			Reason: fmt.Sprintf("Glance says it is %d bytes, larger than the largest accepted (--max-image-size %d)", im.Size, lim)})
	}
	if err := importer.CheckFree(filepath.Join(s.Root(), "tmp"), im.Size, opts.Limits.MinFree); err != nil {
		return nil, im, fmt.Errorf("image %s: download of %d bytes: %w", id, im.Size, err)
	}
	v, err := NewVerifier(im)
	if err != nil {
		return nil, im, err
	}
	tmp, err := os.CreateTemp(filepath.Join(s.Root(), "tmp"), "glance-*."+im.DiskFormat)
	if err != nil {
		return nil, im, fmt.Errorf("image %s: temporary file: %w", id, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	body, err := c.Download(ctx, id)
	if err != nil {
		return nil, im, err
	}
	var w io.Writer = io.MultiWriter(tmp, v)
	if opts.Progress != nil {
		w = io.MultiWriter(w, &progressWriter{fn: opts.Progress, total: im.Size})
	}
	n, err := io.Copy(w, io.LimitReader(body, im.Size+1))
	body.Close()
	if err != nil {
		return nil, im, fmt.Errorf("%w: glance %s: download image %s: after %d of %d bytes: %v", ErrUnavailable, c.name, id, n, im.Size, err)
	}
	if err := v.Check(); err != nil {
		return nil, im, err
	}
	if err := tmp.Close(); err != nil {
		return nil, im, err
	}
	opts.Format = im.DiskFormat
	opts.Source = im.Source()
	res, err := importer.Import(ctx, s, tmp.Name(), opts)
	if err != nil {
		return nil, im, fmt.Errorf("image %s: %w", id, err)
	}
	return res, im, nil
}

type progressWriter struct {
	fn    func(done, total int64)
	done  int64
	total int64
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	p.fn(p.done, p.total)
	return len(b), nil
}
