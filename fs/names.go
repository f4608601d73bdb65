package fs

import (
	"context"
	"strconv"
	"strings"

	"github.com/basefs/basefs/chunkstore"
)

// GiB is the unit of a resized view's size, as in nova's `<base>_<N>` names.
const GiB = 1 << 30

// maxViewGiB bounds resized views to 1 PiB, the largest image basefs accepts.
const maxViewGiB = chunkstore.MaxImageSize / GiB

// Name is a parsed file name in the mount.
type Name struct {
	// Ref is the image part of the name: a 64-hex digest, or an alias a Resolver knows.
	Ref string
	// ViewGiB is N for `<ref>_<N>`, 0 for the image itself.
	ViewGiB int64
}

// ParseName splits a file name into its image reference and view size. It accepts `<ref>` and
// `<ref>_<N>` where N is a canonical decimal from 1 to 1 PiB/GiB (no sign, no leading zeros,
// no spaces); ref must be non-empty lower-case hex (the Resolver decides which lengths mean
// something). Anything else — `.`, `..`, other characters, `_0`, overflow — is not a name.
func ParseName(name string) (Name, bool) {
	ref, size, resized := strings.Cut(name, "_")
	if ref == "" || len(ref) > 128 {
		return Name{}, false
	}
	for i := 0; i < len(ref); i++ {
		c := ref[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return Name{}, false
		}
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
	if err != nil || n < 1 || n > maxViewGiB {
		return Name{}, false
	}
	return Name{Ref: ref, ViewGiB: n}, true
}

// String formats the name back.
func (n Name) String() string {
	if n.ViewGiB == 0 {
		return n.Ref
	}
	return n.Ref + "_" + strconv.FormatInt(n.ViewGiB, 10)
}

// Resolver maps the image part of a name to an image digest. DigestResolver accepts the
// digests themselves; later resolvers add aliases (nova's sha1 of the Glance image id).
type Resolver interface {
	Resolve(ref string) (chunkstore.Digest, bool)
}

// ContextResolver is a Resolver that may need I/O to resolve a name (nova's sha1 name of a
// Glance image the daemon has not loaded yet). An error means the name could not be resolved
// now (the lookup fails with EIO); ok false means the name is unknown (ENOENT).
type ContextResolver interface {
	ResolveContext(ctx context.Context, ref string) (d chunkstore.Digest, ok bool, err error)
}

// AliasLister lists the extra names a Resolver knows (readdir shows them with the images).
type AliasLister interface {
	Aliases(ctx context.Context) (map[string]chunkstore.Digest, error)
}

// resolve uses r's ResolveContext when it has one.
func resolve(ctx context.Context, r Resolver, ref string) (chunkstore.Digest, bool, error) {
	if cr, ok := r.(ContextResolver); ok {
		return cr.ResolveContext(ctx, ref)
	}
	d, ok := r.Resolve(ref)
	return d, ok, nil
}

// DigestResolver resolves a 64-hex image digest to itself.
type DigestResolver struct{}

func (DigestResolver) Resolve(ref string) (chunkstore.Digest, bool) {
	d, err := chunkstore.ParseDigest(ref)
	return d, err == nil
}

// Resolvers tries each resolver in order.
type Resolvers []Resolver

func (rs Resolvers) Resolve(ref string) (chunkstore.Digest, bool) {
	d, ok, _ := rs.ResolveContext(context.Background(), ref)
	return d, ok
}

// ResolveContext tries each resolver in order; the first error stops it.
func (rs Resolvers) ResolveContext(ctx context.Context, ref string) (chunkstore.Digest, bool, error) {
	for _, r := range rs {
		d, ok, err := resolve(ctx, r, ref)
		if err != nil || ok {
			return d, ok, err
		}
	}
	return chunkstore.Digest{}, false, nil
}
