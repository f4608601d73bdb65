package glanceimg

import (
	"context"
	"errors"
	"io/fs"
	"os"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance"
	"github.com/basefs/basefs/chunkstore/inspect"
)

// Resolve maps nova's name for an image (the hex SHA-1 of a Glance image id, or an adopted
// download's name) to the name the cache knows the image by: its digest once its manifest is
// local, else the key of an image being read lazily (Cache.Image accepts both). A name
// recorded but not loaded in this process (after a restart) is ensured through Glance again.
func (l *Layer) Resolve(ctx context.Context, name string) (chunkstore.Digest, bool, error) {
	if !isNovaName(name) {
		return chunkstore.Digest{}, false, nil
	}
	a, err := l.names.read(name)
	if chunkstore.IsNotFound(err) {
		return l.resolveCatalog(ctx, name)
	}
	if err != nil {
		return chunkstore.Digest{}, false, err
	}
	if d, ok := l.known(a); ok {
		return d, true, nil
	}
	if l.origin == nil {
		return chunkstore.Digest{}, false, nil
	}
	im, err := l.Ensure(ctx, a.id)
	if errors.Is(err, inspect.ErrRefused) {
		return chunkstore.Digest{}, false, nil // ENOENT: nova downloads it itself and refuses it
	}
	if err != nil {
		return chunkstore.Digest{}, false, err
	}
	return im.Digest(), true, nil
}

// resolveCatalog finds a nova name this host has never seen in Glance's listing and makes
// the image known (Ensure: for a raw image no data is fetched yet).
func (l *Layer) resolveCatalog(ctx context.Context, name string) (chunkstore.Digest, bool, error) {
	if l.catalog == nil || l.origin == nil {
		return chunkstore.Digest{}, false, nil
	}
	id, ok, err := l.catalog.Lookup(ctx, name)
	if err != nil || !ok {
		return chunkstore.Digest{}, false, err
	}
	im, err := l.Ensure(ctx, id)
	if errors.Is(err, glance.ErrUnusable) || chunkstore.IsNotFound(err) || errors.Is(err, inspect.ErrRefused) {
		l.log.Warn("Glance lists an image nova cannot use", "nova_name", name, "glance_id", id, "err", err)
		return chunkstore.Digest{}, false, nil
	}
	if err != nil {
		return chunkstore.Digest{}, false, err
	}
	return im.Digest(), true, nil
}

// Aliases lists the nova names of the Glance images this host knows, with the name the cache
// knows each by (see Resolve); names not resolvable without asking Glance are left out.
func (l *Layer) Aliases(ctx context.Context) (map[string]chunkstore.Digest, error) {
	out := make(map[string]chunkstore.Digest)
	entries, err := os.ReadDir(l.names.dir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		a, err := l.names.read(e.Name())
		if err != nil {
			continue
		}
		if !a.digest.IsZero() {
			if ok, _ := l.c.Local().HasManifest(ctx, a.digest); ok {
				out[e.Name()] = a.digest
			}
			continue
		}
		l.mu.Lock()
		p := l.prov[a.id]
		l.mu.Unlock()
		if p != nil {
			out[e.Name()] = p.key
		}
	}
	return out, nil
}

// Resolver resolves nova's names through a Layer (for package fs, as a Resolver and
// ContextResolver).
type Resolver struct{ L *Layer }

// Resolve is ResolveContext without a context.
func (r Resolver) Resolve(ref string) (chunkstore.Digest, bool) {
	d, ok, _ := r.L.Resolve(context.Background(), ref)
	return d, ok
}

// ResolveContext is Layer.Resolve.
func (r Resolver) ResolveContext(ctx context.Context, ref string) (chunkstore.Digest, bool, error) {
	return r.L.Resolve(ctx, ref)
}

// CacheKey maps nova's name to the name the cache knows the image by without asking Glance
// (the in-use scan's alias): its digest once recorded, else the key of the image this process
// reads lazily under it. A name it does not know now is false.
func (l *Layer) CacheKey(name string) (chunkstore.Digest, bool) {
	a, err := l.names.read(name)
	if err != nil {
		return chunkstore.Digest{}, false
	}
	return l.known(a)
}

// known returns the name the cache knows an alias's image by, if that needs no Glance.
func (l *Layer) known(a alias) (chunkstore.Digest, bool) {
	if !a.digest.IsZero() {
		return a.digest, true
	}
	l.mu.Lock()
	p := l.prov[a.id]
	l.mu.Unlock()
	if p == nil {
		return chunkstore.Digest{}, false
	}
	if d := p.finalDigest(); !d.IsZero() {
		return d, true
	}
	return p.key, true
}
