package glanceimg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance"
)

// GlanceIndex is an optional interface of a shared tier: entries glance/<id> → a manifest
// digest, as hosts of earlier versions wrote them after completing a lazily read image.
//
// An entry is never trusted: anyone holding the tier's write credentials (every host that
// writes back) can plant one, with a manifest of their own bytes — content addressing proves
// a manifest's chunks, not that the manifest is the Glance image. The trust root is the
// image's basefs_manifest property in Glance, which only the basefs service role may write
// (Glance property protections) and which is written only after the whole image was checked
// against os_hash_value (basefs publish, or a completing host with that role). Hosts read an
// entry only to report it when it disagrees with that property (auditIndex); nothing writes
// entries any more.
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

// auditIndex reads Glance image meta's entry in each shared tier's index and reports one
// that is not backed by the image's basefs_manifest property — the trust root (see
// GlanceIndex): counted (status, metrics), logged, and ignored. Nothing an entry names is
// ever fetched or served.
func (l *Layer) auditIndex(ctx context.Context, meta *glance.Image) {
	for _, o := range l.c.Origins() {
		gi, ok := indexOf(o)
		if !ok {
			continue
		}
		e, err := gi.GetGlanceIndex(ctx, meta.ID)
		if err != nil {
			if !chunkstore.IsNotFound(err) {
				l.log.Debug("shared tier's Glance index not readable (not needed: it is not trusted)", "glance_id", meta.ID, "tier", o.String(), "err", err)
			}
			continue
		}
		if e.Manifest.String() == meta.Manifest() {
			continue
		}
		l.indexIgnored.Add(1)
		l.log.Warn("shared tier's Glance index names a manifest the image's basefs_manifest property does not: ignored (a tier writer cannot vouch for a Glance image; forged, stale, or written without the basefs role)",
			"glance_id", meta.ID, "tier", o.String(), "entry_manifest", e.Manifest.String(), "property", meta.Manifest())
	}
}

// recordManifest is the step after a completed image's chunks and manifest were written back
// to shared tier t: it records the manifest as the image's basefs_manifest property, the root
// other hosts trust. Glance refuses it (403) unless this host's credentials carry the basefs
// service role; then the next host reads the image from Glance, as before.
func (l *Layer) recordManifest(meta *glance.Image, d chunkstore.Digest) cache.Then {
	var once sync.Once
	return func(ctx context.Context, _ chunkstore.Store) (bool, error) {
		var err error
		done := false
		once.Do(func() {
			done = true
			err = l.origin.Client().SetProperty(ctx, meta.ID, glance.ManifestProperty, d.String())
		})
		if !done {
			return false, nil // a second shared tier: recorded once
		}
		if err != nil {
			return false, fmt.Errorf("record %s on Glance image %s (the basefs service role may): %w", glance.ManifestProperty, meta.ID, err)
		}
		l.propsRecorded.Add(1)
		l.log.Info("completed image recorded as the Glance image's manifest", "glance_id", meta.ID, "property", glance.ManifestProperty, "image", d.String())
		return true, nil
	}
}
