// Package tier holds the stores that are wrappers of other stores (desync's model): Tiered
// asks an ordered list of origins — local mirror, shared S3 tier, HTTP origin, Glance — and
// counts, per origin, what it served, missed, or got wrong. It is the one place where "ask
// the origins in order" is written; it verifies nothing itself (every backend returns only
// chunks and manifests that hash to what was asked, or a *chunkstore.CorruptError).
package tier
