// Package s3 is the chunk store on an S3-compatible object store (Ceph RGW first: the engine
// OpenStack clouds already run): a fleet's shared tier, read as an origin and written by
// publish and write-back. It is a full chunkstore.Store and passes chunkstore/storetest
// against a real RGW.
//
// # Location and configuration
//
// A store is s3://BUCKET[/PREFIX] (ParseURL). The service and the credentials are taken the
// way S3 tools take them (ConfigFromEnv): AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (e.g.
// http://127.0.0.1:7480 for a loopback RGW; default https://s3.amazonaws.com), AWS_REGION or
// AWS_DEFAULT_REGION (default us-east-1), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
// AWS_SESSION_TOKEN; the daemon's flags may override endpoint and region. Buckets are addressed
// by path (endpoint/bucket/key), which every S3 engine accepts without DNS set-up.
//
// # Layout
//
// Under the prefix, objects in chunkstore/local's encoding:
//
//	<prefix>chunks/<first 2 hex>/<64 hex>   a chunk object: 16-byte header + raw or zstd payload
//	<prefix>manifests/<64 hex>              a canonical manifest
//	<prefix>profiles/<64 hex>               a boot profile (package cache's encoding)
//	<prefix>glance/<Glance image id>        a Glance index entry: the manifest a host made of
//	                                        that raw Glance image (package cache's encoding)
//
// Chunks, manifests and profiles are laid out as in a published directory, so one can be
// copied into a bucket (or out of it) with any S3 tool. The glance/ entries exist only in a
// shared tier written back to (package cache, "Tiers and write-back").
//
// # Invariants
//
//   - Nothing unverified is returned: every chunk is decoded and hashed on arrival
//     (chunkstore.DecodeChunk), every manifest parsed with chunkstore.ParseManifestFor; wrong
//     bytes are a *chunkstore.CorruptError naming the object's s3:// location. Bytes that do
//     not verify are fetched once more (a body damaged on the way is repaired); wrong twice is
//     returned, so the caller counts corruption of this tier and asks the next one.
//   - Puts are put-if-absent: one PUT with If-None-Match: * (never multipart, so the
//     condition covers the whole object, with Content-MD5 so the service checks the body);
//     412 Precondition Failed means present and reports created=false. Of racing writers
//     exactly one creates an object and none ever replaces one (tested with 16 racers).
//   - A missing object or bucket wraps chunkstore.ErrNotFound; Has* answer false.
//
// # Retries and cooldown
//
// Each call makes at most Config.MaxAttempts attempts (default 3), each bounded by
// Config.Timeout (default 30 s), waiting BaseBackoff·2^(n-1) with jitter between them (default
// 50 ms, capped at 2 s). Transient: refused/reset connections, timeouts, short bodies, 5xx,
// 429, 408, and 409 (a concurrent conditional write). Permanent, returned at once: 403 and
// other 4xx, certificate errors, an unknown host. When a call runs out of attempts the store
// is unavailable for Config.Cooldown (default 2 s): calls then fail at once with an error
// wrapping ErrUnavailable, so a fleet of readers fails over to the next tier without each
// waiting through its retries; after the cooldown one call probes the service (the others
// still fail fast) and its success ends the outage. A service that comes back is used again
// without a restart. IsTransient tells these failures from not found, corrupt and refused.
//
// # Why minio-go
//
// minio-go v7 (github.com/minio/minio-go/v7, v7.4.1) rather than aws-sdk-go-v2: it is one
// small module speaking only S3 (aws-sdk-go-v2 brings its config, credential chain, smithy
// middleware and endpoint-resolution machinery, a dozen modules, for the same five calls), it is
// maintained with S3-compatible engines (MinIO, Ceph) as first-class targets, and its
// PutObjectOptions.SetMatchETagExcept("*") sends If-None-Match: * for put-if-absent. Its own
// retries are turned off (MaxRetries 1) so that the bounds and the cooldown above are ours.
//
// # Concurrency and logging
//
// A Store is safe for concurrent use; its only mutable state is the cooldown (atomics). It
// logs only to Config.Logger: retries at Info, bad objects and outages at Warn.
package s3
