package cache

import (
	"context"

	"github.com/basefs/basefs/chunkstore"
)

// A fleet reads in tiers: the host's local state, then the shared tier (an S3 bucket every
// host reads: s3://), then the origins behind it (dir://, http://, Glance; chunkstore/origin opens them). Config.Origins
// gives the order. A shared tier is the only kind of origin the cache writes to (write-back,
// see writeback.go); publish fills it ahead of time.

// profileBytes is a shared tier that stores boot profiles as opaque objects (chunkstore/s3).
type profileBytes interface {
	GetProfileBytes(ctx context.Context, d chunkstore.Digest) ([]byte, error)
	PutProfileBytes(ctx context.Context, d chunkstore.Digest, b []byte) error
}

// tierProfiles keeps boot profiles in a shared tier, in this package's encoding.
type tierProfiles struct{ t profileBytes }

func (p tierProfiles) GetProfile(ctx context.Context, d chunkstore.Digest, nchunks int) ([]int, error) {
	b, err := p.t.GetProfileBytes(ctx, d)
	if err != nil {
		return nil, err
	}
	return ParseProfile(b, nchunks)
}

func (p tierProfiles) PutProfile(ctx context.Context, d chunkstore.Digest, idx []int) error {
	return p.t.PutProfileBytes(ctx, d, EncodeProfile(idx))
}
