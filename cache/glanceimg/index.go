package glanceimg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance"
)

// GlanceIndex is an optional interface of a shared tier: an index from Glance image ids to
// the manifests hosts made of them. A raw Glance image without a basefs_manifest property is
// read lazily as a provisional image (provisional.go); the host that completes it (its whole data
// matched os_hash_value) writes its manifest to the tier with write-back, then an entry here,
// so that the next host can use that manifest — and the tier's chunks — instead of Glance.
//
// An entry is a hint, not a trust anchor: a reader fetches the manifest it names by digest
// (content addressing), and uses it only if its source is that Glance image and the entry's
// and the manifest's os_hash_value are Glance's current one. Entries are put-if-absent.
type GlanceIndex interface {
	GetGlanceIndex(ctx context.Context, id string) (*GlanceIndexEntry, error)
	PutGlanceIndex(ctx context.Context, id string, e *GlanceIndexEntry) (created bool, err error)
}

// GlanceIndexEntry says that manifest Manifest describes the data of the Glance image the
// entry is stored under, whose os_hash_algo/os_hash_value were HashAlgo/HashValue when it
// was checked.
type GlanceIndexEntry struct {
	Manifest  chunkstore.Digest
	HashAlgo  string
	HashValue string
}

const glanceIndexMagic = "basefs-glance-index 1"

// Encode returns the entry's text form:
//
//	basefs-glance-index 1
//	manifest <64 hex>
//	os_hash_algo <algo>
//	os_hash_value <hex>
func (e *GlanceIndexEntry) Encode() []byte {
	return fmt.Appendf(nil, "%s\nmanifest %s\nos_hash_algo %s\nos_hash_value %s\n", glanceIndexMagic, e.Manifest, e.HashAlgo, e.HashValue)
}

// ParseGlanceIndex parses Encode's form strictly.
func ParseGlanceIndex(b []byte) (*GlanceIndexEntry, error) {
	lines := strings.Split(string(bytes.TrimSuffix(b, []byte("\n"))), "\n")
	if len(lines) != 4 || lines[0] != glanceIndexMagic {
		return nil, errors.New("glance index entry: not in the basefs-glance-index 1 format")
	}
	var e GlanceIndexEntry
	for i, key := range []string{"manifest", "os_hash_algo", "os_hash_value"} {
		v, ok := strings.CutPrefix(lines[i+1], key+" ")
		if !ok || v == "" || strings.ContainsAny(v, " \t\r") {
			return nil, fmt.Errorf("glance index entry: line %d: want %q and a value", i+2, key)
		}
		switch key {
		case "manifest":
			d, err := chunkstore.ParseDigest(v)
			if err != nil {
				return nil, fmt.Errorf("glance index entry: %w", err)
			}
			e.Manifest = d
		case "os_hash_algo":
			e.HashAlgo = v
		default:
			e.HashValue = v
		}
	}
	return &e, nil
}

// indexBytes is a shared tier that stores index entries as opaque objects (chunkstore/s3).
type indexBytes interface {
	GetGlanceIndexBytes(ctx context.Context, id string) ([]byte, error)
	PutGlanceIndexBytes(ctx context.Context, id string, b []byte) (bool, error)
}

// tierIndex is a shared tier's Glance index, in this package's encoding.
type tierIndex struct{ t indexBytes }

// indexOf returns origin o's Glance index, if it keeps one.
func indexOf(o chunkstore.Getter) (GlanceIndex, bool) {
	t, ok := o.(indexBytes)
	if !ok {
		return nil, false
	}
	return tierIndex{t}, true
}

// IndexOf returns the Glance index a shared tier keeps (an s3:// origin), if any.
func IndexOf(o chunkstore.Getter) (GlanceIndex, bool) { return indexOf(o) }

func (x tierIndex) GetGlanceIndex(ctx context.Context, id string) (*GlanceIndexEntry, error) {
	b, err := x.t.GetGlanceIndexBytes(ctx, id)
	if err != nil {
		return nil, err
	}
	return ParseGlanceIndex(b)
}

func (x tierIndex) PutGlanceIndex(ctx context.Context, id string, e *GlanceIndexEntry) (bool, error) {
	return x.t.PutGlanceIndexBytes(ctx, id, e.Encode())
}

// indexedImage looks raw Glance image meta up in the shared tiers' Glance index (GlanceIndex)
// and returns the image their entry names, or nil. An entry is used only if the manifest it
// names (fetched by digest, so verified) describes this Glance image, and both the entry and
// the manifest carry Glance's current os_hash_algo and os_hash_value; otherwise (the image
// changed, an entry of another writer, the tier down) the image goes provisional as before.
func (l *Layer) indexedImage(ctx context.Context, meta *glance.Image) *cache.Image {
	if meta.HashValue == "" || meta.HashAlgo == "" {
		return nil
	}
	for _, o := range l.c.Origins() {
		gi, ok := indexOf(o)
		if !ok {
			continue
		}
		e, err := gi.GetGlanceIndex(ctx, meta.ID)
		if err != nil {
			if !chunkstore.IsNotFound(err) {
				l.log.Warn("shared tier's Glance index not readable; the image goes provisional", "glance_id", meta.ID, "tier", o.String(), "err", err)
			}
			continue
		}
		if e.HashAlgo != meta.HashAlgo || e.HashValue != meta.HashValue {
			l.log.Warn("shared tier's Glance index entry was made of other data (the image changed?); ignored", "glance_id", meta.ID, "tier", o.String(), "manifest", e.Manifest.String())
			continue
		}
		m, err := l.c.Local().GetManifest(ctx, e.Manifest)
		fetched := false
		if chunkstore.IsNotFound(err) {
			m, err = o.GetManifest(ctx, e.Manifest)
			fetched = err == nil
		}
		if err != nil {
			if chunkstore.IsCorrupt(err) || errors.Is(err, chunkstore.ErrManifest) {
				l.c.OriginCounters(o).Corrupt.Add(1)
			}
			l.log.Warn("manifest named by the shared tier's Glance index not usable; the image goes provisional", "glance_id", meta.ID, "tier", o.String(), "manifest", e.Manifest.String(), "err", err)
			continue
		}
		src := m.Source
		if src.GlanceID != meta.ID || src.Format != "raw" || src.HashAlgo != meta.HashAlgo || src.HashValue != meta.HashValue || m.Size != meta.Size {
			l.log.Warn("manifest named by the shared tier's Glance index describes other data; ignored", "glance_id", meta.ID, "tier", o.String(), "manifest", e.Manifest.String(), "source_glance_id", src.GlanceID)
			continue
		}
		if fetched {
			if _, err := l.c.StoreManifest(ctx, m); err != nil {
				l.log.Warn("cannot store the manifest named by the Glance index", "glance_id", meta.ID, "err", err)
				return nil
			}
		}
		im, err := l.c.Image(ctx, e.Manifest)
		if err == nil {
			err = l.names.Write(meta.ID, e.Manifest)
		}
		if err != nil {
			l.log.Warn("image named by the shared tier's Glance index not usable; the image goes provisional", "glance_id", meta.ID, "err", err)
			return nil
		}
		l.log.Info("Glance raw image found in the shared tier's Glance index: chunks from the tier, behind it Glance by range", "glance_id", meta.ID, "tier", o.String(), "image", e.Manifest.String())
		return im
	}
	return nil
}
