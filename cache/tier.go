package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/chunkstore/s3"
)

// A fleet reads in tiers: the host's local state, then the shared tier (an S3 bucket every
// host reads: s3://), then the origins behind it (dir://, http://, Glance). Config.Origins
// gives the order. A shared tier is the only kind of origin the cache writes to (write-back,
// see writeback.go); publish fills it ahead of time.

// S3Tier is an s3:// origin as the cache uses it: a chunkstore.Store that also serves and
// stores boot profiles (ProfileGetter) in this package's encoding.
type S3Tier struct{ *s3.Store }

var (
	_ chunkstore.Store = S3Tier{}
	_ ProfileStore     = S3Tier{}
	_ sharedTier       = S3Tier{}
	_ GlanceIndex      = S3Tier{}
)

// GetProfile reads image d's boot profile from the bucket.
func (t S3Tier) GetProfile(ctx context.Context, d chunkstore.Digest, nchunks int) ([]int, error) {
	b, err := t.GetProfileBytes(ctx, d)
	if err != nil {
		return nil, err
	}
	return ParseProfile(b, nchunks)
}

// PutProfile stores image d's boot profile in the bucket (put-if-absent).
func (t S3Tier) PutProfile(ctx context.Context, d chunkstore.Digest, idx []int) error {
	return t.PutProfileBytes(ctx, d, EncodeProfile(idx))
}

// GetGlanceIndex reads Glance image id's index entry from the bucket (an error wrapping
// chunkstore.ErrNotFound if there is none).
func (t S3Tier) GetGlanceIndex(ctx context.Context, id string) (*GlanceIndexEntry, error) {
	b, err := t.GetGlanceIndexBytes(ctx, id)
	if err != nil {
		return nil, err
	}
	return ParseGlanceIndex(b)
}

// PutGlanceIndex stores Glance image id's index entry (put-if-absent: created is false, and
// the entry there is kept, if one exists).
func (t S3Tier) PutGlanceIndex(ctx context.Context, id string, e *GlanceIndexEntry) (bool, error) {
	return t.PutGlanceIndexBytes(ctx, id, e.Encode())
}

// GlanceIndex is an optional interface of a shared tier: an index from Glance image ids to
// the manifests hosts made of them. A raw Glance image without a basefs_manifest property is
// read lazily as a provisional image (glance.go); the host that completes it (its whole data
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

// sharedTier marks origins that may be written to (write-back).
type sharedTier interface {
	chunkstore.Store
	isSharedTier()
}

func (S3Tier) isSharedTier() {}

// OriginOptions configure OpenOriginWith and OpenTarget.
type OriginOptions struct {
	// S3Endpoint and S3Region override AWS_ENDPOINT_URL(_S3) and AWS_REGION for s3:// URLs.
	S3Endpoint, S3Region string
	// Logger receives the stores' retries and bad objects (nil: discard).
	Logger *slog.Logger
}

func openS3(ctx context.Context, raw string, o OriginOptions, create bool) (S3Tier, error) {
	cfg, err := s3.ConfigFromEnv(raw)
	if err != nil {
		return S3Tier{}, err
	}
	if o.S3Endpoint != "" {
		cfg.Endpoint = o.S3Endpoint
	}
	if o.S3Region != "" {
		cfg.Region = o.S3Region
	}
	cfg.Logger, cfg.CreateBucket = o.Logger, create
	st, err := s3.New(ctx, cfg)
	if err != nil {
		return S3Tier{}, fmt.Errorf("%s: %w", raw, err)
	}
	return S3Tier{st}, nil
}

// OpenTarget opens a store to publish into: dir:///PATH (created if needed) or
// s3://BUCKET[/PREFIX] (the bucket is created if missing).
func OpenTarget(ctx context.Context, raw string, o OriginOptions) (chunkstore.Store, error) {
	if s3.IsURL(raw) {
		return openS3(ctx, raw, o, true)
	}
	p, err := dirPath(raw)
	if err != nil {
		return nil, fmt.Errorf("--to %q: want dir:///absolute/path or s3://BUCKET[/PREFIX]", raw)
	}
	return local.Open(p, local.Options{})
}
