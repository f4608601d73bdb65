package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/httpx"
)

// MaxChunkObjectSize bounds the body of a chunk object (chunkstore.MaxChunkObjectSize).
const MaxChunkObjectSize = chunkstore.MaxChunkObjectSize

// maxProfileSize bounds a boot profile (a line per chunk of the largest image we expect).
const maxProfileSize = 16 << 20

// maxGlanceIndexSize bounds a Glance index entry (a few short lines).
const maxGlanceIndexSize = 4096

// Store is a chunkstore.Store on an S3 bucket. It is safe for concurrent use.
type Store struct {
	cfg  Config // with defaults applied
	core minio.Core
	log  *slog.Logger
	url  string

	downUntil atomic.Int64 // unix nanos until which calls fail at once (see Config.Cooldown)
	probing   atomic.Bool  // one call tries the service after the cooldown; others still fail fast
}

var _ chunkstore.Store = (*Store)(nil)

// New returns a store for cfg. With CreateBucket it makes the bucket if missing (one request);
// otherwise nothing is requested until the first call.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := validBucket(cfg.Bucket); err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	if cfg.Prefix != "" && !strings.HasSuffix(cfg.Prefix, "/") {
		return nil, fmt.Errorf("s3: prefix %q must end with /", cfg.Prefix)
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	host, secure, err := parseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	for _, d := range []struct {
		p   *time.Duration
		def time.Duration
	}{{&cfg.Timeout, DefaultTimeout}, {&cfg.BaseBackoff, DefaultBaseBackoff}, {&cfg.MaxBackoff, DefaultMaxBackoff}, {&cfg.Cooldown, DefaultCooldown}} {
		if *d.p < 0 {
			return nil, fmt.Errorf("s3: a negative duration in Config (%v); use 0 for the default", *d.p)
		}
		if *d.p == 0 {
			*d.p = d.def
		}
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.MaxManifestSize <= 0 {
		cfg.MaxManifestSize = DefaultMaxManifestSize
	}
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, err
	}
	tr.MaxIdleConnsPerHost = 64 // chunk fetches and write-backs run in parallel
	var creds *credentials.Credentials
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)
	} else {
		creds = credentials.New(&credentials.Static{Value: credentials.Value{SignerType: credentials.SignatureAnonymous}})
	}
	client, err := minio.New(host, &minio.Options{
		Creds:        creds,
		Secure:       secure,
		Region:       cfg.Region, // known: no bucket-location lookup
		BucketLookup: minio.BucketLookupPath,
		Transport:    tr,
		MaxRetries:   1, // retries are ours (bounded, jittered, with a cooldown)
	})
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", cfg.URL(), err)
	}
	s := &Store{cfg: cfg, core: minio.Core{Client: client}, log: cfg.Logger, url: cfg.URL()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if cfg.CreateBucket {
		if err := s.ensureBucket(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Store) ensureBucket(ctx context.Context) error {
	err := s.retry(ctx, "bucket", chunkstore.Digest{}, "create bucket "+s.cfg.Bucket, func(actx context.Context) error {
		err := s.core.MakeBucket(actx, s.cfg.Bucket, minio.MakeBucketOptions{Region: s.cfg.Region})
		if code := errorCode(err); code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("s3 %s: create bucket: %w", s.url, err)
	}
	return nil
}

// String returns s3://bucket/prefix.
func (s *Store) String() string { return s.url }

// Endpoint returns the service's URL.
func (s *Store) Endpoint() string { return s.cfg.Endpoint }

// Bucket returns the bucket name.
func (s *Store) Bucket() string { return s.cfg.Bucket }

// ChunkKey returns the object key of chunk d: <prefix>chunks/<first 2 hex>/<64 hex>.
func (s *Store) ChunkKey(d chunkstore.Digest) string {
	h := d.String()
	return s.cfg.Prefix + "chunks/" + h[:2] + "/" + h
}

// ManifestKey returns the object key of manifest d: <prefix>manifests/<64 hex>.
func (s *Store) ManifestKey(d chunkstore.Digest) string {
	return s.cfg.Prefix + "manifests/" + d.String()
}

// ProfileKey returns the object key of image d's boot profile: <prefix>profiles/<64 hex>.
func (s *Store) ProfileKey(d chunkstore.Digest) string {
	return s.cfg.Prefix + "profiles/" + d.String()
}

// GlanceIndexKey returns the object key of Glance image id's index entry: <prefix>glance/<id>.
func (s *Store) GlanceIndexKey(id string) string {
	return s.cfg.Prefix + "glance/" + id
}

func (s *Store) where(key string) string { return "s3://" + s.cfg.Bucket + "/" + key }

// GetChunk fetches chunk d and verifies it (DecodeChunk). Bytes that do not verify are fetched
// once more (a body damaged on the way is then repaired); wrong twice is a *CorruptError.
func (s *Store) GetChunk(ctx context.Context, d chunkstore.Digest) (*chunkstore.Chunk, error) {
	key := s.ChunkKey(d)
	var c *chunkstore.Chunk
	err := s.getVerified(ctx, "chunk", d, key, MaxChunkObjectSize, func(b []byte) (bool, error) {
		var err error
		c, err = chunkstore.DecodeChunk(d, b, s.where(key))
		return true, err
	})
	return c, err
}

// GetManifest fetches manifest d; it is accepted only if it hashes to d and parses strictly.
func (s *Store) GetManifest(ctx context.Context, d chunkstore.Digest) (*chunkstore.Manifest, error) {
	key := s.ManifestKey(d)
	var m *chunkstore.Manifest
	err := s.getVerified(ctx, "manifest", d, key, s.cfg.MaxManifestSize, func(b []byte) (bool, error) {
		var retry bool
		var err error
		m, retry, err = chunkstore.FetchedManifest(d, b, s.where(key))
		return retry, err
	})
	return m, err
}

// GetProfileBytes returns the stored boot profile of image d, unparsed (package cache parses
// it), or an error wrapping ErrNotFound.
func (s *Store) GetProfileBytes(ctx context.Context, d chunkstore.Digest) ([]byte, error) {
	key := s.ProfileKey(d)
	var out []byte
	err := s.retry(ctx, "profile", d, "GET "+s.where(key), func(actx context.Context) error {
		b, err := s.getObject(actx, key, maxProfileSize)
		out = b
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SharedTier marks a bucket as a fleet's shared tier (chunkstore.SharedTier).
func (s *Store) SharedTier() {}

// PutProfileBytes stores image d's boot profile (put-if-absent, like every object).
func (s *Store) PutProfileBytes(ctx context.Context, d chunkstore.Digest, b []byte) error {
	_, err := s.putIfAbsent(ctx, "profile", d, s.ProfileKey(d), b)
	return err
}

// GetGlanceIndexBytes returns the stored index entry of Glance image id, unparsed (package
// cache parses it: it names a manifest, which is verified by its digest when fetched), or an
// error wrapping ErrNotFound. id must be a plain Glance id (the caller validates it).
func (s *Store) GetGlanceIndexBytes(ctx context.Context, id string) ([]byte, error) {
	key := s.GlanceIndexKey(id)
	var out []byte
	err := s.retry(ctx, "glance index", chunkstore.Digest{}, "GET "+s.where(key), func(actx context.Context) error {
		b, err := s.getObject(actx, key, maxGlanceIndexSize)
		out = b
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PutGlanceIndexBytes stores Glance image id's index entry (put-if-absent, like every object:
// created is false if an entry was there, which is then left as it is).
func (s *Store) PutGlanceIndexBytes(ctx context.Context, id string, b []byte) (bool, error) {
	return s.putIfAbsent(ctx, "glance index", chunkstore.Digest{}, s.GlanceIndexKey(id), b)
}

// decoder turns a body into the object; retry says whether another request may give other bytes.
type decoder func(body []byte) (retry bool, err error)

func (s *Store) getVerified(ctx context.Context, kind string, d chunkstore.Digest, key string, limit int64, decode decoder) error {
	for corrupt := 0; ; corrupt++ {
		var body []byte
		err := s.retry(ctx, kind, d, "GET "+s.where(key), func(actx context.Context) error {
			b, err := s.getObject(actx, key, limit)
			body = b
			return err
		})
		var tl *httpx.TooLargeError
		if errors.As(err, &tl) {
			err = &chunkstore.CorruptError{Kind: kind, Digest: d, Where: s.where(key), Err: err}
			if corrupt == 0 {
				continue
			}
			return err
		}
		if err != nil {
			return err
		}
		again, err := decode(body)
		if err == nil {
			return nil
		}
		s.log.LogAttrs(ctx, slog.LevelWarn, "s3 object has bad bytes", slog.String("kind", kind),
			slog.String("digest", d.Short()), slog.String("object", s.where(key)), slog.Any("err", err))
		if !again || corrupt > 0 {
			return err
		}
	}
}

// getObject is one GET of key, its body read whole within limit.
func (s *Store) getObject(ctx context.Context, key string, limit int64) ([]byte, error) {
	rc, info, _, err := s.core.GetObject(ctx, s.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return httpx.ReadBody(rc, info.Size, limit)
}

// HasChunk reports whether chunk d's object exists (HEAD; not read or verified).
func (s *Store) HasChunk(ctx context.Context, d chunkstore.Digest) (bool, error) {
	return s.has(ctx, "chunk", d, s.ChunkKey(d))
}

// HasManifest reports whether manifest d exists (HEAD; not read or verified).
func (s *Store) HasManifest(ctx context.Context, d chunkstore.Digest) (bool, error) {
	return s.has(ctx, "manifest", d, s.ManifestKey(d))
}

func (s *Store) has(ctx context.Context, kind string, d chunkstore.Digest, key string) (bool, error) {
	err := s.retry(ctx, kind, d, "HEAD "+s.where(key), func(actx context.Context) error {
		_, err := s.core.StatObject(actx, s.cfg.Bucket, key, minio.StatObjectOptions{})
		return err
	})
	switch {
	case err == nil:
		return true, nil
	case chunkstore.IsNotFound(err):
		return false, nil
	default:
		return false, err
	}
}

// PutChunk stores c's object unless the bucket holds it: one conditional PUT with
// If-None-Match: * (412 Precondition Failed → created false). Of racing writers exactly one
// creates the object; none replaces another's.
func (s *Store) PutChunk(ctx context.Context, c *chunkstore.Chunk) (bool, error) {
	hdr, payload := chunkstore.EncodeObject(c.Data())
	obj := make([]byte, 0, len(hdr)+len(payload))
	obj = append(append(obj, hdr[:]...), payload...)
	return s.putIfAbsent(ctx, "chunk", c.Digest(), s.ChunkKey(c.Digest()), obj)
}

// PutManifest stores m (put-if-absent) and returns its digest.
func (s *Store) PutManifest(ctx context.Context, m *chunkstore.Manifest) (chunkstore.Digest, error) {
	d, b, err := m.Digest()
	if err != nil {
		return d, err
	}
	_, err = s.putIfAbsent(ctx, "manifest", d, s.ManifestKey(d), b)
	return d, err
}

func (s *Store) putIfAbsent(ctx context.Context, kind string, d chunkstore.Digest, key string, obj []byte) (bool, error) {
	created := false
	err := s.retry(ctx, kind, d, "PUT "+s.where(key), func(actx context.Context) error {
		opts := minio.PutObjectOptions{
			ContentType:      "application/octet-stream",
			DisableMultipart: true, // one request: the condition holds for the whole object
			SendContentMd5:   true, // the service checks the body arrived whole
		}
		opts.SetMatchETagExcept("*") // If-None-Match: *
		_, err := s.core.Client.PutObject(actx, s.cfg.Bucket, key, bytes.NewReader(obj), int64(len(obj)), opts)
		switch code := statusOf(err); {
		case err == nil:
			created = true
			return nil
		case code == http.StatusPreconditionFailed:
			created = false // present already: nothing written
			return nil
		case code == http.StatusConflict && errorCode(err) == "ConditionalRequestConflict":
			// A concurrent conditional write of the same key is in progress: one of them wins
			// and the object will be there; ours must not be counted as created.
			return &statusError{code: code, msg: "concurrent conditional write"}
		}
		return err
	})
	if err != nil {
		return false, err
	}
	return created, nil
}

// DeleteChunk removes chunk d; removing an absent chunk is not an error.
func (s *Store) DeleteChunk(ctx context.Context, d chunkstore.Digest) error {
	return s.remove(ctx, "chunk", d, s.ChunkKey(d))
}

// DeleteManifest removes manifest d; removing an absent manifest is not an error.
func (s *Store) DeleteManifest(ctx context.Context, d chunkstore.Digest) error {
	return s.remove(ctx, "manifest", d, s.ManifestKey(d))
}

func (s *Store) remove(ctx context.Context, kind string, d chunkstore.Digest, key string) error {
	err := s.retry(ctx, kind, d, "DELETE "+s.where(key), func(actx context.Context) error {
		return s.core.RemoveObject(actx, s.cfg.Bucket, key, minio.RemoveObjectOptions{})
	})
	if err != nil && !chunkstore.IsNotFound(err) {
		return err
	}
	return nil
}

// WalkChunks calls fn for every chunk object, in key order. Keys that are not
// chunks/<2 hex>/<64 hex> with matching shards are skipped.
func (s *Store) WalkChunks(ctx context.Context, fn func(chunkstore.Digest) error) error {
	return s.walk(ctx, s.cfg.Prefix+"chunks/", func(rest string) (chunkstore.Digest, bool) {
		shard, name, ok := strings.Cut(rest, "/")
		if !ok || len(shard) != 2 || !strings.HasPrefix(name, shard) {
			return chunkstore.Digest{}, false
		}
		d, err := chunkstore.ParseDigest(name)
		return d, err == nil
	}, fn)
}

// WalkManifests calls fn for every manifest object, in key order.
func (s *Store) WalkManifests(ctx context.Context, fn func(chunkstore.Digest) error) error {
	return s.walk(ctx, s.cfg.Prefix+"manifests/", func(rest string) (chunkstore.Digest, bool) {
		d, err := chunkstore.ParseDigest(rest)
		return d, err == nil
	}, fn)
}

func (s *Store) walk(ctx context.Context, prefix string, parse func(string) (chunkstore.Digest, bool), fn func(chunkstore.Digest) error) error {
	token := ""
	for {
		var res minio.ListBucketV2Result
		err := s.retry(ctx, "list", chunkstore.Digest{}, "LIST "+s.where(prefix), func(actx context.Context) error {
			var err error
			res, err = s.core.ListObjectsV2(s.cfg.Bucket, prefix, "", token, "", 1000)
			return err
		})
		if chunkstore.IsNotFound(err) {
			return nil // no bucket: nothing in it
		}
		if err != nil {
			return err
		}
		for _, o := range res.Contents {
			d, ok := parse(strings.TrimPrefix(o.Key, prefix))
			if !ok {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(d); err != nil {
				return err
			}
		}
		if !res.IsTruncated || res.NextContinuationToken == "" {
			return nil
		}
		token = res.NextContinuationToken
	}
}

// retry runs op with a per-attempt timeout until it succeeds, fails permanently, or the
// attempts run out (see doc.go, "Retries and cooldown"). A missing object or bucket comes
// back as an error wrapping chunkstore.ErrNotFound.
func (s *Store) retry(ctx context.Context, kind string, d chunkstore.Digest, what string, op func(context.Context) error) error {
	if until := s.downUntil.Load(); until != 0 {
		if time.Now().UnixNano() < until || !s.probing.CompareAndSwap(false, true) {
			return &unavailableError{what: what, until: time.Unix(0, until)}
		}
		// This call probes the service after the cooldown; others keep failing fast meanwhile.
		defer s.probing.Store(false)
	}
	policy := httpx.Policy{Attempts: s.cfg.MaxAttempts, Base: s.cfg.BaseBackoff, Max: s.cfg.MaxBackoff}
	n, canceled, err := httpx.Do(ctx, policy, func(ctx context.Context, _ int) error {
		actx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		defer cancel()
		return op(actx)
	}, func(err error) httpx.Verdict {
		if isNotFound(err) || !isTransient(err) {
			return httpx.Stop
		}
		return httpx.Retry
	}, nil, func(a httpx.Attempt) {
		s.log.LogAttrs(ctx, slog.LevelInfo, "s3 request failed; retrying", slog.String("request", what),
			slog.Int("attempt", a.N), slog.Duration("wait", a.Wait), slog.Any("err", a.Err))
	})
	switch {
	case err == nil:
		s.downUntil.Store(0)
		return nil
	case isNotFound(err):
		s.downUntil.Store(0) // the service answered
		return fmt.Errorf("%s %s: %s: %w", kind, d.Short(), what, chunkstore.ErrNotFound)
	case canceled:
		return fmt.Errorf("%s %s: %s: %w (after %d attempts; last error: %v)", kind, d.Short(), what, ctx.Err(), n, err)
	case !isTransient(err):
		s.downUntil.Store(0)
		return fmt.Errorf("%s %s: %s: %w (permanent; not retried)", kind, d.Short(), what, err)
	}
	s.downUntil.Store(time.Now().Add(s.cfg.Cooldown).UnixNano())
	s.log.LogAttrs(ctx, slog.LevelWarn, "s3 unavailable; failing fast for the cooldown",
		slog.String("store", s.url), slog.String("request", what), slog.Int("attempts", n),
		slog.Duration("cooldown", s.cfg.Cooldown), slog.Any("err", err))
	return &exhaustedError{what: what, attempts: n, err: err}
}

// RawClient returns a plain minio-go client for cfg's service, for tests and tools that must
// reach objects past the Store's rules (e.g. to damage one on purpose).
func RawClient(cfg Config) (*minio.Client, error) {
	host, secure, err := parseEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	return minio.New(host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure:       secure,
		Region:       cfg.Region,
		BucketLookup: minio.BucketLookupPath,
	})
}
