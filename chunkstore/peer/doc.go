// Package peer is the fleet's peer tier: an origin that asks the other hosts of a fleet for a
// chunk or a manifest before the shared tier is asked.
//
// # Who asks whom
//
// Membership is hashicorp/memberlist (SWIM gossip, encrypted and authenticated with a key
// derived from the fleet secret). Each chunk has owners: the live members ranked by rendezvous
// hashing of (member name, chunk digest) (rendezvous.go). A host that needs a chunk asks the
// first Owners members in that order, one attempt each, each bounded by Timeout; when it meets
// itself in the ranking it stops: it is the owner and takes the chunk from the next origin
// (the shared tier) itself. A host asked for a chunk serves its verified local copy, or, not
// having it, fetches it once through its own cache (which then skips the peers: the request
// context carries WithoutPeers), keeps it, and serves it. So every chunk of a cold image is
// read from the tier about once per fleet, by its owner, and each host keeps its own copy.
//
// # Trust
//
// Peers are trusted for transport only: every chunk a peer sends is decoded and verified
// against its digest (chunkstore.DecodeChunk) before anyone sees it; a bad one is a
// *chunkstore.CorruptError and the tier order goes on to the next origin. Only members may read
// a host's peer port: each request carries an HMAC-SHA256 of its method, path and time under a
// key derived from the fleet secret (auth.go), refused when wrong or more than MaxSkew old.
//
// # Failure
//
// A peer that is dead, refuses, stalls or lies costs its reader at most Timeout per owner
// asked; then the next owner, then the next origin. Nothing here ever fails a read: GetChunk's
// errors only move the tier order on. HasChunk and HasManifest answer false: peers are no
// durable origin.
//
// # Manifests
//
// GetManifest asks the owners of a manifest's digest as GetChunk does a chunk's (GET
// /manifests/DIGEST, the same authentication); the owner serves its copy or fetches it once
// through its cache. The asker reads at most Config.MaxManifest bytes (a larger declared length
// is refused unread) and accepts only bytes that hash to the digest it asked for
// (chunkstore.FetchedManifest): a forged manifest is a *chunkstore.CorruptError, counted like a
// forged chunk. So the tier and Glance stay the roots of every image: a peer can only hand on
// what the digest a host already trusts names.
package peer
