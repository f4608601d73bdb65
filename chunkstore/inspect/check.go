package inspect

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrRefused is wrapped by every Refusal: the image's bytes are not acceptable, whoever asks
// again (a permanent verdict, never a transient fault).
var ErrRefused = errors.New("image refused by inspection")

// Refusal says why an image was refused.
type Refusal struct {
	Format     string // the detected format ("" when detection itself refused)
	DiskFormat string // the declared format ("" when none was declared)
	Reason     string
}

func (e *Refusal) Error() string {
	s := "image refused"
	if e.Format != "" {
		s += " (content " + e.Format
		if e.DiskFormat != "" {
			s += ", disk_format " + e.DiskFormat
		}
		s += ")"
	}
	return s + ": " + e.Reason
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *Refusal) Is(target error) bool { return target == ErrRefused }

// Result is an accepted image's verdict.
type Result struct {
	// Format is the detected format: raw, qcow2, vmdk, vhd, vhdx, vdi, iso or gpt.
	Format string
	// QemuFormat is the qemu-img driver that reads the image (`-f`): raw for raw, iso and
	// gpt, vpc for vhd, the format's own name otherwise.
	QemuFormat string
}

// diskFormats are the disk_format values nova inspects (its ALL_FORMATS), plus the ami
// family it lets be any safe format.
var diskFormats = map[string]bool{
	"raw": true, "qcow2": true, "vhd": true, "vhdx": true, "vmdk": true, "vdi": true,
	"qed": true, "iso": true, "ami": true, "ari": true, "aki": true,
}

func amiFamily(f string) bool { return f == "ami" || f == "ari" || f == "aki" }

// Check inspects the size bytes of r and returns the verdict for an image declared as
// diskFormat (Glance's names; "" for a local file that declares nothing: the detected format
// is taken). A refusal wraps ErrRefused; a read error is returned as it is.
func Check(r io.ReaderAt, size int64, diskFormat string) (*Result, error) {
	if diskFormat != "" && !diskFormats[diskFormat] {
		return nil, &Refusal{DiskFormat: diskFormat, Reason: fmt.Sprintf("disk_format %q is not a format nova accepts (raw, qcow2, vmdk, vhd, vhdx, vdi, iso, ami/ari/aki)", diskFormat)}
	}
	in, err := detect(newBlockReader(r, size), size)
	if err != nil {
		var ref *Refusal
		if errors.As(err, &ref) {
			ref.DiskFormat = diskFormat
		}
		return nil, err
	}
	got := in.name()
	refuse := func(reason string) error {
		return &Refusal{Format: got, DiskFormat: diskFormat, Reason: reason}
	}
	if err := in.safety(); err != nil {
		if got == "gpt" && (diskFormat == "aki" || diskFormat == "ari") {
			// A kernel or ramdisk is no partitioned disk: a Linux bzImage carries the boot
			// sector signature with x86 code where partition entries would be, and the
			// deployed nova (Debian's 26.2) calls it raw and boots it. The partition-table
			// rules (the later inspector's) guard against format confusion, not host reads.
			return &Result{Format: "raw", QemuFormat: "raw"}, nil
		}
		var fe *formatError
		if errors.As(err, &fe) {
			return nil, refuse("content does not parse as " + got + ": " + err.Error())
		}
		return nil, refuse(err.Error())
	}
	switch {
	case diskFormat == "" || amiFamily(diskFormat):
	case got == diskFormat:
	case diskFormat == "raw" && got == "gpt":
		// A raw disk with a partition table.
	default:
		return nil, refuse(fmt.Sprintf("the content is %s, not the declared %s", got, diskFormat))
	}
	q, ok := qemuFormats[got]
	if !ok {
		return nil, refuse(got + " images cannot be served as a raw disk by basefs")
	}
	return &Result{Format: got, QemuFormat: q}, nil
}

var qemuFormats = map[string]string{
	"raw": "raw", "iso": "raw", "gpt": "raw", "qcow2": "qcow2", "vmdk": "vmdk",
	"vhd": "vpc", "vhdx": "vhdx", "vdi": "vdi",
}

// CheckFile is Check on the file at path (a regular file or a block device).
func CheckFile(path, diskFormat string) (*Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	res, err := Check(f, size, diskFormat)
	if err != nil && !errors.Is(err, ErrRefused) {
		return nil, fmt.Errorf("inspect %s: %w", path, err)
	}
	return res, err
}

// blockReader reads r in aligned 64 KiB blocks and keeps the last few, so nova's 512-byte
// steps cost one read per block (one range request when r is remote).
type blockReader struct {
	r     io.ReaderAt
	size  int64
	cache [4]struct {
		off int64
		b   []byte
	}
	next int
}

const blockSize = 64 << 10

func newBlockReader(r io.ReaderAt, size int64) *blockReader {
	br := &blockReader{r: r, size: size}
	for i := range br.cache {
		br.cache[i].off = -1
	}
	return br
}

// ReadAt serves p (never crossing a block: the detector reads 512-byte aligned steps).
func (br *blockReader) ReadAt(p []byte, off int64) (int, error) {
	base := off / blockSize * blockSize
	var blk []byte
	for i := range br.cache {
		if br.cache[i].off == base {
			blk = br.cache[i].b
		}
	}
	if blk == nil {
		n := min(blockSize, br.size-base)
		slot := &br.cache[br.next]
		br.next = (br.next + 1) % len(br.cache)
		if cap(slot.b) < int(n) {
			slot.b = make([]byte, n)
		}
		slot.b = slot.b[:n]
		slot.off = -1
		if _, err := br.r.ReadAt(slot.b, base); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		slot.off = base
		blk = slot.b
	}
	i := off - base
	if i >= int64(len(blk)) {
		return 0, io.EOF
	}
	n := copy(p, blk[i:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
