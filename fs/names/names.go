package names

import (
	"strconv"
	"strings"

	"github.com/basefs/basefs/chunkstore"
)

// GiB is the unit of a resized view's size, as in nova's `<base>_<N>` names.
const GiB = 1 << 30

// MaxViewGiB bounds resized views to 1 PiB, the largest image basefs accepts.
const MaxViewGiB = chunkstore.MaxImageSize / GiB

// Name is a parsed image or view name.
type Name struct {
	// Ref is the image part: lower-case hex (a digest, a nova name, or another ref a
	// resolver may know).
	Ref string
	// ViewGiB is N for `<ref>_<N>`, 0 for the image itself.
	ViewGiB int64
}

// Parse splits a file name into its image reference and view size. It accepts `<ref>` and
// `<ref>_<N>` where N is a canonical decimal from 1 to MaxViewGiB (no sign, no leading zeros,
// no spaces); ref must be non-empty lower-case hex of at most 128 characters. Anything else —
// `.`, `..`, other characters, `_0`, overflow — is not a name.
func Parse(name string) (Name, bool) {
	ref, size, resized := strings.Cut(name, "_")
	if ref == "" || len(ref) > 128 || !isHex(ref) {
		return Name{}, false
	}
	if !resized {
		return Name{Ref: ref}, true
	}
	if size == "" || len(size) > 8 || size[0] == '0' {
		return Name{}, false
	}
	for i := 0; i < len(size); i++ {
		if size[i] < '0' || size[i] > '9' {
			return Name{}, false
		}
	}
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil || n < 1 || n > MaxViewGiB {
		return Name{}, false
	}
	return Name{Ref: ref, ViewGiB: n}, true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// String formats the name back.
func (n Name) String() string {
	if n.ViewGiB == 0 {
		return n.Ref
	}
	return n.Ref + "_" + strconv.FormatInt(n.ViewGiB, 10)
}

// Digest returns the image digest the name's ref is, if it is one (64 hex).
func (n Name) Digest() (chunkstore.Digest, bool) {
	if len(n.Ref) != 2*chunkstore.DigestSize {
		return chunkstore.Digest{}, false
	}
	d, err := chunkstore.ParseDigest(n.Ref)
	return d, err == nil
}

// IsNova reports whether the name's ref is a nova name: 40 hex, the SHA-1 of a Glance id.
func (n Name) IsNova() bool { return len(n.Ref) == 40 }

// IsImage reports whether name is in the images' namespace: `<ref>` or `<ref>_<N>` where ref is
// a 64-hex digest or a 40-hex nova name. Every other name belongs to the writable area.
func IsImage(name string) bool {
	n, ok := Parse(name)
	return ok && (len(n.Ref) == 2*chunkstore.DigestSize || n.IsNova())
}

// The mount root's extended attributes: where its daemon's control socket is, and the pid of
// the supervisor holding the FUSE connection.
const (
	ControlXattr    = "user.basefs.control"
	SupervisorXattr = "user.basefs.supervisor"
)
