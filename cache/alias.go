package cache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance"
)

// The alias table maps nova's names (the hex SHA-1 of a Glance image id) to Glance ids and,
// once the image's manifest is local, to its digest. One file per name,
// <state>/aliases/<sha1>, written atomically:
//
//	glance <image-id>
//	digest <64 hex>        (only once the manifest is local)
type alias struct {
	id     string
	digest chunkstore.Digest // zero until the manifest is local
}

func (c *Cache) aliasDir() string { return filepath.Join(c.local.Root(), "aliases") }

func isNovaName(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

func (c *Cache) readAlias(name string) (alias, error) {
	var a alias
	if !isNovaName(name) {
		return a, fmt.Errorf("alias %q: %w", name, chunkstore.ErrNotFound)
	}
	b, err := os.ReadFile(filepath.Join(c.aliasDir(), name))
	if errors.Is(err, fs.ErrNotExist) {
		return a, fmt.Errorf("alias %s: %w", name, chunkstore.ErrNotFound)
	}
	if err != nil {
		return a, err
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "glance":
			a.id = v
		case "digest":
			if a.digest, err = chunkstore.ParseDigest(v); err != nil {
				return alias{}, fmt.Errorf("alias %s: %w", name, err)
			}
		default:
			return alias{}, fmt.Errorf("alias %s: unknown line %q", name, line)
		}
	}
	if glance.ValidateID(a.id) != nil || glance.NovaName(a.id) != name {
		return alias{}, fmt.Errorf("alias %s: does not name a Glance image whose nova name it is", name)
	}
	return a, nil
}

// writeAlias records Glance image id (and its digest, when not zero) under its nova name.
func (c *Cache) writeAlias(id string, d chunkstore.Digest) error {
	return WriteAlias(c.local.Root(), id, d)
}

// WriteAlias records, in the state directory root, nova's name for Glance image id → id and
// (when not zero) the image's digest, atomically. `basefs import glance://` uses it.
func WriteAlias(root, id string, d chunkstore.Digest) error {
	if err := glance.ValidateID(id); err != nil {
		return err
	}
	dir := filepath.Join(root, "aliases")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	body := "glance " + id + "\n"
	if !d.IsZero() {
		body += "digest " + d.String() + "\n"
	}
	tmp, err := os.CreateTemp(filepath.Join(root, "tmp"), "alias-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(body); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, glance.NovaName(id)))
}

// ResolveAlias maps nova's name for a Glance image (the hex SHA-1 of its id) to the name the
// cache knows the image by: its digest once its manifest is local, else the provisional key of
// an image being read lazily (Cache.Image accepts both). A name recorded but not loaded in
// this process (after a restart) is ensured through Glance again.
func (c *Cache) ResolveAlias(ctx context.Context, name string) (chunkstore.Digest, bool, error) {
	if !isNovaName(name) {
		return chunkstore.Digest{}, false, nil
	}
	a, err := c.readAlias(name)
	if chunkstore.IsNotFound(err) {
		return chunkstore.Digest{}, false, nil
	}
	if err != nil {
		return chunkstore.Digest{}, false, err
	}
	if !a.digest.IsZero() {
		return a.digest, true, nil
	}
	c.mu.Lock()
	p := c.prov[a.id]
	c.mu.Unlock()
	if p != nil {
		if d := p.prov.finalDigest(); !d.IsZero() {
			return d, true, nil
		}
		return p.digest, true, nil
	}
	if c.glance == nil {
		return chunkstore.Digest{}, false, nil
	}
	im, err := c.EnsureGlance(ctx, a.id)
	if err != nil {
		return chunkstore.Digest{}, false, err
	}
	return im.Digest(), true, nil
}

// Aliases lists the nova names of the Glance images this host knows, with the name the cache
// knows each by (see ResolveAlias); names not resolvable without asking Glance are left out.
func (c *Cache) Aliases(ctx context.Context) (map[string]chunkstore.Digest, error) {
	out := make(map[string]chunkstore.Digest)
	entries, err := os.ReadDir(c.aliasDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		a, err := c.readAlias(e.Name())
		if err != nil {
			continue
		}
		if !a.digest.IsZero() {
			if ok, _ := c.local.HasManifest(ctx, a.digest); ok {
				out[e.Name()] = a.digest
			}
			continue
		}
		c.mu.Lock()
		p := c.prov[a.id]
		c.mu.Unlock()
		if p != nil {
			out[e.Name()] = p.digest
		}
	}
	return out, nil
}

// AliasDigest returns the digest recorded for a nova name (for the in-use scan), if any.
func (c *Cache) AliasDigest(name string) (chunkstore.Digest, bool) {
	a, err := c.readAlias(name)
	if err != nil || a.digest.IsZero() {
		return chunkstore.Digest{}, false
	}
	return a.digest, true
}

// AliasResolver resolves nova's names through the cache's alias table (for package fs, as a
// Resolver and ContextResolver).
type AliasResolver struct{ C *Cache }

// Resolve is ResolveContext without a context.
func (r AliasResolver) Resolve(ref string) (chunkstore.Digest, bool) {
	d, ok, _ := r.C.ResolveAlias(context.Background(), ref)
	return d, ok
}

// ResolveContext is Cache.ResolveAlias.
func (r AliasResolver) ResolveContext(ctx context.Context, ref string) (chunkstore.Digest, bool, error) {
	return r.C.ResolveAlias(ctx, ref)
}
