package fs

import (
	"context"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/fs/names"
)

// GiB is the unit of a resized view's size, as in nova's `<base>_<N>` names.
const GiB = names.GiB

// maxViewGiB bounds resized views to 1 PiB, the largest image basefs accepts.
const maxViewGiB = names.MaxViewGiB

// Name is a parsed file name in the mount (package names).
type Name = names.Name

// ParseName splits a file name into its image reference and view size (names.Parse).
func ParseName(name string) (Name, bool) { return names.Parse(name) }

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
