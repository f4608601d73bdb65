// Package httpstore is the read-only HTTP(S) origin: a chunkstore.Getter that reads a
// published directory (exactly the layout of chunkstore/local) from any static web server.
//
//	GET  <base>/chunks/<first 2 hex>/<64 hex>   a chunk object (16-byte header + raw or zstd payload)
//	GET  <base>/manifests/<64 hex>              a canonical manifest
//	HEAD the same URLs                          HasChunk, HasManifest (existence only; nothing is verified)
//
// It owns the HTTP side of an origin and nothing else: building object URLs, timeouts, bounded
// retries, size bounds, and turning responses into chunkstore results. Decoding and verification
// are chunkstore's (DecodeChunk, ParseManifestFor), so nothing unverified is ever returned: a
// chunk is returned only if it hashes to its digest, a manifest only if it hashes to its name,
// whatever the server says.
//
// # Results
//
//   - 200: the body is read (bounded, see below), decoded and verified.
//   - 404 and 410: a wrapped chunkstore.ErrNotFound at once (HasChunk/HasManifest: false, nil).
//   - Transient failures are retried: connection refused or reset, a connection closed early,
//     a body shorter than its Content-Length (unexpected EOF), an attempt that exceeds
//     Options.Timeout, a stall (no byte for Options.StallTimeout, waiting for the headers or
//     within the body), 5xx, 429 and 408.
//   - Everything else is permanent and returned at once: other 4xx (401, 403, 400, ...), other
//     statuses, certificate errors, an unknown host, too many redirects.
//
// # Retry policy
//
// At most Options.MaxAttempts attempts (default 4) per call. Between attempts the store waits
// BaseBackoff·2^(n-1) (default 100 ms, doubling), capped at MaxBackoff (default 5 s), with
// jitter (a random duration in [d/2, d]) so that many hosts do not retry in step; a Retry-After
// header on a 429 or 5xx lengthens the wait, up to MaxBackoff. Cancelling the caller's context
// stops an attempt in flight and any wait at once; the error then wraps ctx.Err(). When the
// attempts run out the error names the URL, the number of attempts and the last cause (wrapped
// with %w); IsTransient reports true for it.
//
// # Corruption policy
//
// Bytes that do not verify (a chunk object that cannot be decoded or does not hash to its
// digest, a manifest that does not hash to its name, a body larger than the bound) are retried
// exactly once, with "Cache-Control: no-cache" so that a cache in between revalidates: a body
// damaged on the way (a bad proxy, a flipped bit past TCP's checksum) is then repaired at the
// cost of one request. If the second body is wrong too, the *chunkstore.CorruptError (naming the
// object and its URL) is returned, so the caller counts corruption at the origin rather than a
// network failure. A manifest whose bytes do hash to its name but do not parse is returned as a
// CorruptError at once: fetching the same bytes again cannot help.
//
// # Bounds
//
// A response body is never read past its bound, so a hostile or broken server cannot exhaust
// memory: MaxChunkObjectSize for a chunk object (a header, MaxChunkSize bytes and zstd's worst
// case expansion) and Options.MaxManifestSize for a manifest (default 64 MiB: a million chunk
// entries). A Content-Length above the bound is refused before reading.
//
// # Concurrency and logging
//
// A Store is immutable after New and safe for concurrent use; it holds no locks. It logs only
// to Options.Logger (nothing by default): each retry at Info, each corrupt body at Warn.
package httpstore
