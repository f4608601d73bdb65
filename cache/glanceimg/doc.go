// Package glanceimg makes Glance images usable by the cache (package cache knows nothing of
// Glance): by id, by nova's name, lazily by range, and through a fleet's shared tier.
//
// Layer.Ensure makes a Glance image usable by id: by the manifest its basefs_manifest
// property names (the trust root, below; accepted only if its source is that image);
// else, for a raw image, as a provisional image once its first 256 KiB (one range request)
// pass nova's inspection (inspect.go: an image that is not raw, or unsafe, is refused, recorded
// in Config.Refusals for status and never fetched again by this process; nova's name of it
// does not resolve); else (qcow2 and other formats) by streaming
// it once, checking the stream against os_hash_value and checksum, converting it with
// qemu-img and chunking it into the local state (nothing kept on any failure). The Glance
// origin is the last origin: it serves chunks of raw Glance images by range, each verified
// against the digest its manifest gives (wrong bytes are counted as origin corruption and
// answered with an error, never served).
//
// Nova's names: the alias table <state>/aliases/<sha1 of image id> holds the Glance id and,
// once the image's manifest is local, its digest (an adopted download: the digest alone);
// Layer.Resolve (Resolver) and Layer.Aliases serve package fs, so <sha1> and <sha1>_<N>
// read the same bytes as <digest> and <digest>_<N>; Layer.CacheKey maps a nova name to the
// cache's name without asking Glance (the daemon's in-use scan: an overlay on a lazily read
// image's nova name uses it). A name not in the table is looked up in the Glance catalog
// (Config.Catalog: Glance's listing, inverted) and the image ensured.
//
// A provisional image is a raw Glance image without a manifest, known by its Glance id, known
// to the cache under ProvisionalKey(id) (never a manifest's digest) and read through its
// ChunkSource (provisional.go). Chunk i is the byte range [i·cs, (i+1)·cs) of Glance's data (cs: chunkstore.DefaultChunkSize), fetched with one Range request per run of
// missing chunks (a read spanning several, or a sequential stream whose window doubles up to
// 16 MiB; random reads fetch just their chunks), one fetch per chunk however many readers wait.
// Each chunk is hashed as it arrives and its digest kept; later reads are verified against it
// (memory, local state, or Glance again). Background fill fetches the rest in 16 MiB ranges.
// When every chunk has been seen the whole image is hashed (from the verified chunks) and
// compared with os_hash_value and checksum: on a match the manifest is written (after every
// chunk is durable), then the alias's digest; on a mismatch — or when Glance serves bytes
// other than those first read — the image is marked bad: every later read fails (EIO at the
// FUSE boundary) and the Glance origin's corruption counter grows. Nothing else marks it bad:
// a completion that cannot finish (Glance down, a full disk) is tried again for ever, with
// capped exponential backoff (1 s doubling to 1 min), at once when a Glance read succeeds
// again, until the image is removed or the layer closed (either stops a wait at once; Close
// waits, briefly, for running attempts to end); reads go on meanwhile, and status
// (and basefs_glance_completion*) shows the attempts, the last error and the next try.
//
// What is guaranteed when, for a provisional image: bytes are trusted on first fetch (Glance
// gives nothing finer than a whole-image hash to check a range against); from then on they
// are exactly the bytes first fetched (each chunk verified against the digest kept). The
// whole-image check against os_hash_value comes when the image is complete; only then does
// it get a content-addressed name. Its files are opened with direct I/O, so a mark of bad
// is not hidden by the kernel's page cache. Provisional state lives in memory: after a
// restart the image is provisional again (its alias records the id) and chunks are fetched
// again.
//
// Shared tier and trust: a manifest is trusted for a Glance image only through the image's
// basefs_manifest property, a value the tier's writers cannot forge — Glance property
// protections let only the basefs service role create or change it (scripts/lib/
// openstack-config.sh), and it is written only after the whole image was checked against
// os_hash_value: by `basefs publish glance://ID`, or by a host with --write-back that
// completed the image, after its chunks and manifest reached the tier (recordManifest; a
// host without the role is refused, and the next host reads Glance). The manifest the
// property names is fetched by digest, so verified, and must describe that image. A lazily
// read image's chunks reach the write-back tier as they arrive (named by their own SHA-256,
// so safe there before the whole-image check). The tier's Glance index (glance/<id> →
// manifest, written by earlier versions) is never used: an entry that disagrees with the
// property is counted (status, basefs_glance_tier_index_ignored_total), logged and ignored
// (auditIndex), and the image is served from Glance as if there were none. Hosts thus need
// only read access to the tier. A no-Keystone Glance (scripts/start-glance.sh, for tests)
// gives every caller an admin context without roles: there anyone who reaches Glance may set
// the property, and it is no trust root.
//
// Lock order: Layer.mu, then Cache.mu or a provisional's mu; no lock is held across I/O.
package glanceimg
