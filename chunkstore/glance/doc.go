// Package glance is basefs's OpenStack Glance (image API v2) client and origin, built on
// gophercloud.
//
// Configuration is the OpenStack way: a fixed endpoint without Keystone (Options.Endpoint,
// `--glance-endpoint URL`), or Keystone from OS_CLOUD (clouds.yaml, found as the openstack CLI
// finds it) or the OS_* variables (OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, …),
// with the image endpoint taken from the service catalog (OS_REGION_NAME, OS_INTERFACE).
//
// Client.Image reads an image's metadata (status, formats, size, checksum, os_hash_algo/value,
// custom properties such as basefs_manifest). Client.ReadRange reads one byte range with a
// single Range header (Glance answers 400 to multi-range) and requires a 206 of exactly the
// length asked for; Client.Download streams the whole image. Every request has a timeout for
// its answer and a stall timeout for its body (a truncated file in Glance's store makes a
// download hang otherwise); transient failures are retried with exponential backoff. Redirects
// are followed only within the scheme and host asked (httpx.SameOrigin): net/http would send
// the Keystone token (X-Auth-Token) wherever Glance said. Errors
// are classified: chunkstore.ErrNotFound (unknown id), ErrAuth (401/403: fix credentials),
// ErrUnavailable (Glance down or failing after retries), ErrUnusable (not active, container
// format not bare, a disk format basefs cannot read, no hash to verify), ErrHashMismatch (the
// data does not match os_hash_value or checksum).
//
// Glance does not verify the data it serves. Nothing from this package is trusted without a
// check: Import verifies the whole stream against os_hash_value and checksum before it keeps
// anything; Origin verifies every chunk read by range against the digest a manifest gives it
// (a mismatch is a *chunkstore.CorruptError); the lazy path in package cache keeps each
// chunk's digest as it arrives and checks the whole image before giving it a name.
//
// References: glance://<id> (ParseRef: a lower-case canonical UUID only). NovaName gives
// nova's name for the image's base file in instances/_base: the hex SHA-1 of the id.
package glance
