package chunkstore

import "context"

// ChunkGetter reads chunks. GetChunk returns a verified chunk, ErrNotFound (wrapped), a
// *CorruptError naming the chunk, or another (possibly transient) error.
type ChunkGetter interface {
	GetChunk(ctx context.Context, d Digest) (*Chunk, error)
	HasChunk(ctx context.Context, d Digest) (bool, error)
}

// ChunkPutter writes chunks. PutChunk is put-if-absent: created is false when the store
// already held the chunk (then nothing was written). Concurrent puts of one chunk are safe and
// exactly one of them reports created.
type ChunkPutter interface {
	PutChunk(ctx context.Context, c *Chunk) (created bool, err error)
	DeleteChunk(ctx context.Context, d Digest) error
}

// ManifestGetter reads manifests. GetManifest returns a manifest whose canonical encoding
// hashes to d (never anything else), ErrNotFound (wrapped), or a *CorruptError.
type ManifestGetter interface {
	GetManifest(ctx context.Context, d Digest) (*Manifest, error)
	HasManifest(ctx context.Context, d Digest) (bool, error)
}

// ManifestPutter writes manifests, put-if-absent, and returns the image digest.
type ManifestPutter interface {
	PutManifest(ctx context.Context, m *Manifest) (Digest, error)
	DeleteManifest(ctx context.Context, d Digest) error
}

// Walker lists what a store holds. The callback's error stops the walk and is returned.
type Walker interface {
	WalkChunks(ctx context.Context, fn func(Digest) error) error
	WalkManifests(ctx context.Context, fn func(Digest) error) error
}

// Getter is what an origin must offer: reading chunks and manifests.
type Getter interface {
	ChunkGetter
	ManifestGetter
	// String names the store for logs and errors, e.g. "dir:///srv/basefs".
	String() string
}

// Store is a full read-write store with listing, as the local state and publish targets are.
type Store interface {
	Getter
	ChunkPutter
	ManifestPutter
	Walker
}

// SharedTier is a store every host of a fleet reads (an S3 bucket): the only kind of origin
// a host writes back to. SharedTier marks it.
type SharedTier interface {
	Store
	SharedTier()
}
