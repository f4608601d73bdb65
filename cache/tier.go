package cache

import (
	"context"
	"fmt"
	"log/slog"

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
	_ ProfileGetter    = S3Tier{}
	_ sharedTier       = S3Tier{}
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

// sharedTier marks origins that may be written to (write-back).
type sharedTier interface {
	chunkstore.Store
	isSharedTier()
}

func (S3Tier) isSharedTier() {}

// profilePutter is a publish target that keeps boot profiles besides a local directory.
type profilePutter interface {
	PutProfile(ctx context.Context, d chunkstore.Digest, idx []int) error
}

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
