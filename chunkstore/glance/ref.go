package glance

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strings"
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
