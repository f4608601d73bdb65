package glanceimg

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
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

// Names is the alias table in a state directory. It is the cache's name table
// (cache.Names): removal forgets an image's names, adoption records one.
type Names struct {
	root string

	mu       sync.Mutex
	onForget []func(chunkstore.Digest)
}

var _ cache.Names = (*Names)(nil)

// NewNames returns the alias table of the state directory root.
func NewNames(root string) *Names { return &Names{root: root} }

// OnForget registers f to be told of every image whose names are forgotten.
func (n *Names) OnForget(f func(chunkstore.Digest)) {
	n.mu.Lock()
	n.onForget = append(n.onForget, f)
	n.mu.Unlock()
}

func (n *Names) dir() string { return filepath.Join(n.root, "aliases") }

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

func (n *Names) read(name string) (alias, error) {
	var a alias
	if !isNovaName(name) {
		return a, fmt.Errorf("alias %q: %w", name, chunkstore.ErrNotFound)
	}
	b, err := os.ReadFile(filepath.Join(n.dir(), name))
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
	if glanceref.ValidateID(a.id) != nil || glanceref.NovaName(a.id) != name {
		return alias{}, fmt.Errorf("alias %s: does not name a Glance image whose nova name it is", name)
	}
	return a, nil
}

// Path returns the file recording Glance image id's nova name (its mtime is the use of a
// lazily read image).
func (n *Names) Path(id string) string { return filepath.Join(n.dir(), glanceref.NovaName(id)) }

// Forget removes the recorded name (a nova name) and every other name of image d.
func (n *Names) Forget(d chunkstore.Digest, name string) error {
	removed := false
	entries, err := os.ReadDir(n.dir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		a, err := n.read(e.Name())
		if e.Name() != name && (err != nil || a.digest != d) {
			continue
		}
		if err := os.Remove(filepath.Join(n.dir(), e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove name %s: %w", e.Name(), err)
		}
		removed = true
	}
	if removed { // durable before the image's manifest and chunks go (Manager's removal order)
		if err := syncDir(n.dir()); err != nil {
			return fmt.Errorf("remove names of %s: %w", d.Short(), err)
		}
	}
	n.mu.Lock()
	hooks := slices.Clone(n.onForget)
	n.mu.Unlock()
	for _, f := range hooks {
		f(d)
	}
	return nil
}

// Record records nova name → digest d with no Glance id (an adopted download).
func (n *Names) Record(name string, d chunkstore.Digest) error {
	if !isNovaName(name) {
		return fmt.Errorf("%q is not a nova image name (40 hex digits)", name)
	}
	return writeAliasFile(n.root, name, "digest "+d.String()+"\n")
}

// Write records Glance image id (and its digest, when not zero) under its nova name.
func (n *Names) Write(id string, d chunkstore.Digest) error { return WriteAlias(n.root, id, d) }

// WriteAlias records, in the state directory root, nova's name for Glance image id → id and
// (when not zero) the image's digest, atomically. `basefs import glance://` uses it.
func WriteAlias(root, id string, d chunkstore.Digest) error {
	if err := glanceref.ValidateID(id); err != nil {
		return err
	}
	body := "glance " + id + "\n"
	if !d.IsZero() {
		body += "digest " + d.String() + "\n"
	}
	return writeAliasFile(root, glanceref.NovaName(id), body)
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

func syncDir(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
