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
	if a.id == "" {
		if a.digest.IsZero() {
			return alias{}, fmt.Errorf("alias %s: names neither a Glance image nor a digest", name)
		}
		return a, nil // an adopted download: nova's name, its content, no Glance id known
	}
	if glance.ValidateID(a.id) != nil || glance.NovaName(a.id) != name {
		return alias{}, fmt.Errorf("alias %s: does not name a Glance image whose nova name it is", name)
	}
	return a, nil
}

func (c *Cache) aliasPath(id string) string { return filepath.Join(c.aliasDir(), glance.NovaName(id)) }

// removeAliases removes the recorded name (a nova name) and every other name of image d.
func (c *Cache) removeAliases(d chunkstore.Digest, name string) error {
	entries, err := os.ReadDir(c.aliasDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		a, err := c.readAlias(e.Name())
		if e.Name() != name && (err != nil || a.digest != d) {
			continue
		}
		if err := os.Remove(filepath.Join(c.aliasDir(), e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove name %s: %w", e.Name(), err)
		}
	}
	return nil
}

// writeAlias records Glance image id (and its digest, when not zero) under its nova name.
func (c *Cache) writeAlias(id string, d chunkstore.Digest) error {
	return WriteAlias(c.local.Root(), id, d)
}

// writeNameAlias records nova name → digest d with no Glance id (an adopted download).
func writeNameAlias(root, name string, d chunkstore.Digest) error {
	if !isNovaName(name) {
		return fmt.Errorf("%q is not a nova image name (40 hex digits)", name)
	}
	return writeAliasFile(root, name, "digest "+d.String()+"\n")
}

// WriteAlias records, in the state directory root, nova's name for Glance image id → id and
// (when not zero) the image's digest, atomically. `basefs import glance://` uses it.
func WriteAlias(root, id string, d chunkstore.Digest) error {
	if err := glance.ValidateID(id); err != nil {
		return err
	}
	body := "glance " + id + "\n"
	if !d.IsZero() {
		body += "digest " + d.String() + "\n"
	}
	return writeAliasFile(root, glance.NovaName(id), body)
}

func writeAliasFile(root, name, body string) error {
	dir := filepath.Join(root, "aliases")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
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
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
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
		return c.resolveCatalog(ctx, name)
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

// resolveCatalog finds a nova name this host has never seen in Glance's listing and makes
// the image known (EnsureGlance: for a raw image no data is fetched yet).
func (c *Cache) resolveCatalog(ctx context.Context, name string) (chunkstore.Digest, bool, error) {
	if c.catalog == nil || c.glance == nil {
		return chunkstore.Digest{}, false, nil
	}
	id, ok, err := c.catalog.Lookup(ctx, name)
	if err != nil || !ok {
		return chunkstore.Digest{}, false, err
	}
	im, err := c.EnsureGlance(ctx, id)
	if errors.Is(err, glance.ErrUnusable) || chunkstore.IsNotFound(err) {
		c.log.Warn("Glance lists an image nova cannot use", "nova_name", name, "glance_id", id, "err", err)
		return chunkstore.Digest{}, false, nil
	}
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
