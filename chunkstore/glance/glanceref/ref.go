// Package glanceref is the vocabulary of Glance images other packages share without linking a
// Glance client: image references and ids, nova's names for them, and the errors that
// classify what went wrong with one.
package glanceref

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Scheme prefixes a Glance image reference: glance://<image-id>.
const Scheme = "glance://"

// IsRef reports whether s is meant as a Glance reference (it starts with glance://), valid or not.
func IsRef(s string) bool { return strings.HasPrefix(s, Scheme) }

// ParseRef parses glance://<image-id> and returns the image id. The id must be a UUID in
// Glance's canonical form: 36 characters, lower-case hex in groups of 8-4-4-4-12 separated
// by '-'. Nothing else is accepted (no upper case, no braces, no path, query or fragment),
// so an id is always safe as a URL path element and a file name.
func ParseRef(s string) (string, error) {
	id, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		return "", fmt.Errorf("image reference %q: want glance://<image-id>", trunc(s))
	}
	if err := ValidateID(id); err != nil {
		return "", fmt.Errorf("image reference %q: %w", trunc(s), err)
	}
	return id, nil
}

// ValidateID checks a Glance image id: a lower-case canonical UUID.
func ValidateID(id string) error {
	if len(id) != 36 {
		return fmt.Errorf("Glance image id %q: want a UUID (36 characters like 0b6f3a9e-6a7c-4f1e-9d2b-3c4d5e6f7a8b), have %d characters", trunc(id), len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return fmt.Errorf("Glance image id %q: want '-' at %d", id, i)
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return fmt.Errorf("Glance image id %q: character %q at %d is not lower-case hex", id, c, i)
			}
		}
	}
	return nil
}

// NovaName returns nova's name for the image's base file in instances/_base: the hex SHA-1
// of the image id.
func NovaName(id string) string {
	h := sha1.Sum([]byte(id))
	return hex.EncodeToString(h[:])
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// ErrUnavailable is wrapped by errors that mean Glance could not be reached or answered with
// a server error after every retry (transient: a later try may succeed).
var ErrUnavailable = errors.New("glance unavailable")

// ErrUnusable is wrapped by errors about an image basefs cannot serve: not active, a
// container format other than bare, no data.
var ErrUnusable = errors.New("glance image not usable")

// ErrHashMismatch is wrapped when image data does not match Glance's os_hash_value or
// checksum: Glance's stored file changed after upload (Glance itself does not check).
var ErrHashMismatch = errors.New("image data does not match Glance's hash")

// ErrBadImage is wrapped by reads of a lazily read image whose whole data failed Glance's
// os_hash_value or checksum: the image is marked bad and never served again by the process.
var ErrBadImage = errors.New("image marked bad: its data does not match Glance's hash")

// LayerStats is what the Glance layer (package cache/glanceimg) tells an operator.
type LayerStats struct {
	// CompletionRetries counts whole-image checks of lazily read images that could not finish
	// for a transient cause (Glance down, a full disk) and were tried again.
	CompletionRetries int64 `json:"completion_retries"`
	// Completing lists the images whose completion waits to be tried again.
	Completing []Completion `json:"completing,omitempty"`
	// TierIndexIgnored counts shared-tier Glance index entries ignored because the image's
	// basefs_manifest property (the trust root) does not name their manifest: forged, stale,
	// or written by a host without the basefs role.
	TierIndexIgnored int64 `json:"tier_index_ignored"`
	// ManifestsRecorded counts basefs_manifest properties this host recorded on Glance images
	// it completed and wrote back.
	ManifestsRecorded int64 `json:"manifests_recorded"`
}

// Completion is a lazily read image whose completion waits to be tried again.
type Completion struct {
	GlanceID  string    `json:"glance_id"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error"`
	NextTry   time.Time `json:"next_try"`
}

// CatalogStats is what the catalog tells an operator.
type CatalogStats struct {
	Images    int       `json:"images"`               // names known from the last good listing
	Listings  int64     `json:"listings"`             // listings asked of Glance
	LastList  time.Time `json:"last_listing"`         // when the last listing ended
	LastError string    `json:"last_error,omitempty"` // why it failed, if it did
}
