package glance

import (
	"context"
	"fmt"
	"sync"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
)

// Origin serves chunks of raw Glance images by range, verified: it knows, from the manifests
// registered with it (those whose source is a raw Glance image), where each chunk lives in
// which image's data. A chunk whose bytes in Glance no longer hash to its digest is a
// *chunkstore.CorruptError — never served. Origin has no manifests (those come from a store or
// from a completed lazy read); GetManifest always answers ErrNotFound.
type Origin struct {
	c    *Client
	mu   sync.RWMutex
	locs map[chunkstore.Digest]location
}

type location struct {
	id  string
	off int64
	n   int
}

var _ chunkstore.Getter = (*Origin)(nil)

// NewOrigin returns an Origin reading through c.
func NewOrigin(c *Client) *Origin { return &Origin{c: c, locs: make(map[chunkstore.Digest]location)} }

// Client returns the Glance client.
func (o *Origin) Client() *Client { return o.c }

// Register records where m's chunks live, if m describes a raw Glance image (a converted
// image's Glance data is not its raw bytes, so it gives nothing to read by range).
func (o *Origin) Register(m *chunkstore.Manifest) {
	if m.Source.GlanceID == "" || m.Source.Format != "raw" || glanceref.ValidateID(m.Source.GlanceID) != nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, d := range m.Chunks {
		if d.IsZero() {
			continue
		}
		if _, ok := o.locs[d]; !ok {
			o.locs[d] = location{id: m.Source.GlanceID, off: int64(i) * m.ChunkSize, n: int(m.ChunkLen(i))}
		}
	}
}

func (o *Origin) String() string { return o.c.String() }

func (o *Origin) lookup(d chunkstore.Digest) (location, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	l, ok := o.locs[d]
	return l, ok
}

// GetChunk reads chunk d's range from its Glance image and verifies it.
func (o *Origin) GetChunk(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	l, ok := o.lookup(d)
	if !ok {
		return nil, fmt.Errorf("chunk %s: in no registered Glance image: %w", d.Short(), chunkstore.ErrNotFound)
	}
	buf := make([]byte, l.n)
	if err := o.c.ReadRange(ctx, l.id, l.off, buf); err != nil {
		return nil, err
	}
	ch, err := chunkstore.VerifyChunk(d, buf)
	if err != nil {
		err.(*chunkstore.CorruptError).Where = fmt.Sprintf("%s image %s bytes %d-%d", o.c, l.id, l.off, l.off+int64(l.n)-1)
		return nil, err
	}
	return ch, nil
}

// HasChunk reports whether some registered Glance image holds chunk d.
func (o *Origin) HasChunk(ctx context.Context, d chunkstore.Digest) (bool, error) {
	_, ok := o.lookup(d)
	return ok, nil
}

// GetManifest answers ErrNotFound: Glance holds no manifests.
func (o *Origin) GetManifest(ctx context.Context, d chunkstore.Digest) (*chunkstore.Manifest, error) {
	return nil, fmt.Errorf("manifest %s: %w", d.Short(), chunkstore.ErrNotFound)
}

// HasManifest answers false.
func (o *Origin) HasManifest(ctx context.Context, d chunkstore.Digest) (bool, error) {
	return false, nil
}
