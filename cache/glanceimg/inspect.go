package glanceimg

import (
	"context"
	"fmt"
	"io"

	"github.com/basefs/basefs/chunkstore/glance"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/chunkstore/inspect"
)

// headBytes is read in one range request before a raw Glance image is served lazily: for a
// raw image every region nova's inspectors want lies in it (ISO's descriptor at 32 KiB,
// VHDX's region table at 192–256 KiB), so inspection costs that one request.
const headBytes = 256 << 10

// inspectLazy refuses, before any byte of it is served, a raw Glance image that is larger
// than allowed or whose content is not raw as nova's inspector sees it (a qcow2 or VMDK
// uploaded as raw, a hostile partition table, …).
func (l *Layer) inspectLazy(ctx context.Context, meta *glance.Image) error {
	if max := l.limits.MaxSize; max > 0 && meta.Size > max {
		return &inspect.Refusal{DiskFormat: meta.DiskFormat, Reason: fmt.Sprintf("Glance says it is %d bytes, larger than the largest accepted (--max-image-size %d)", meta.Size, max)}
	}
	r := &rangeReader{ctx: ctx, c: l.origin.Client(), id: meta.ID, size: meta.Size}
	r.head = make([]byte, min(meta.Size, headBytes))
	if err := r.c.ReadRange(ctx, meta.ID, 0, r.head); err != nil {
		return fmt.Errorf("image %s: read its header to inspect it: %w", meta.ID, err)
	}
	if _, err := inspect.Check(r, meta.Size, meta.DiskFormat); err != nil {
		return fmt.Errorf("image %s: %w", meta.ID, err)
	}
	return nil
}

// refused records err (if it is a refusal of Glance image id) for status and returns it.
func (l *Layer) refused(id string, err error) error {
	if err != nil && l.refusals != nil {
		l.log.Warn("Glance image refused: nova's name will not resolve", "glance_id", id, "nova_name", glanceref.NovaName(id), "err", err)
	}
	return l.refusals.Record(glanceref.NovaName(id), id, err)
}

// rangeReader reads a Glance image by range, its first bytes from head.
type rangeReader struct {
	ctx  context.Context
	c    *glance.Client
	id   string
	size int64
	head []byte
}

func (r *rangeReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), r.size-off))
	if off+int64(n) <= int64(len(r.head)) {
		copy(p, r.head[off:])
	} else if err := r.c.ReadRange(r.ctx, r.id, off, p[:n]); err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
