package nova

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/child"
	"github.com/basefs/basefs/fs/names"
)

// DiskFile is an instance's root disk in its directory (nova's and the agent's name).
const DiskFile = "disk"

// MaxIDLen is the longest instance ID.
const MaxIDLen = 63

// ValidateID checks an instance ID: 1 to 63 characters from [A-Za-z0-9._-], the first a
// letter or digit. So an ID is always one plain path element (never `.`, `..` or hidden),
// and never `_base` or another name nova keeps next to its instances.
func ValidateID(id string) error {
	if id == "" {
		return fmt.Errorf("instance ID is empty")
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("instance ID %q: longer than %d characters", truncate(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return fmt.Errorf("instance ID %q: must start with a letter or digit", truncate(id))
		}
		if !alnum && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("instance ID %q: character %q at %d is not allowed (use A-Z a-z 0-9 . _ -)", truncate(id), c, i)
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// InUseImages returns which images back which instances, the way nova's image cache manager
// finds the bases in use: it reads the backing file of every `<instancesPath>/*/disk` with
// `qemu-img info` and maps the backing file's name (a view: `<digest>` or `<digest>_<N>`) to
// its image. Instance IDs are sorted per image. A disk whose backing file is not a basefs view
// is not counted; a directory without a disk (a spawn in progress) is skipped, and so, without
// being looked into, is every entry whose name is not an instance ID (ValidateID) — `_base`
// in particular, which may be the daemon's own mount (the daemon must not call into itself).
// nova's instance directories (UUIDs) are valid IDs. Any disk it cannot read makes it fail: a
// cache manager must then remove nothing.
func InUseImages(ctx context.Context, instancesPath string) (map[chunkstore.Digest][]string, error) {
	return inUseImages(ctx, instancesPath, "qemu-img", nil)
}

// InUseImagesAliased is InUseImages that also counts backing files named by nova's name for a
// Glance image (`<sha1 of image id>[_<N>]`), mapped to digests by alias (a name alias does not
// know is not counted: such an image has no local manifest for cleanup to remove).
func InUseImagesAliased(ctx context.Context, instancesPath string, alias func(name string) (chunkstore.Digest, bool)) (map[chunkstore.Digest][]string, error) {
	return inUseImages(ctx, instancesPath, "qemu-img", alias)
}

func inUseImages(ctx context.Context, instancesPath, qemuImg string, alias func(string) (chunkstore.Digest, bool)) (map[chunkstore.Digest][]string, error) {
	entries, err := os.ReadDir(instancesPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return map[chunkstore.Digest][]string{}, nil
		}
		return nil, fmt.Errorf("in-use images: %w", err)
	}
	used := map[chunkstore.Digest][]string{}
	for _, e := range entries { // sorted by name, so each image's IDs are too
		if !e.IsDir() || ValidateID(e.Name()) != nil {
			continue
		}
		disk := filepath.Join(instancesPath, e.Name(), DiskFile)
		if _, err := os.Stat(disk); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("in-use images: %w", err)
		}
		backing, err := backingFile(ctx, qemuImg, disk)
		if err != nil {
			if _, serr := os.Stat(disk); errors.Is(serr, fs.ErrNotExist) {
				continue // terminated meanwhile
			}
			return nil, fmt.Errorf("in-use images: %w", err)
		}
		if backing == "" {
			continue
		}
		v, ok := names.Parse(filepath.Base(backing))
		if !ok {
			continue // not a basefs view
		}
		d, ok := v.Digest()
		if !ok && alias != nil && v.IsNova() {
			d, ok = alias(v.Ref)
		}
		if !ok {
			continue // not a basefs view, or a nova name no local image has
		}
		used[d] = append(used[d], e.Name())
	}
	return used, nil
}

// backingFile returns the backing file a disk names ("" if none). -U reads the image of a
// running guest (qemu holds a lock on it).
func backingFile(ctx context.Context, qemuImg, disk string) (string, error) {
	// Under nova's limits, with a scrubbed environment: a guest's disk is not to be trusted.
	out, err := child.Run(ctx, child.QemuImgInfo, qemuImg, "info", "-U", "--output=json", disk)
	if err != nil {
		return "", fmt.Errorf("qemu-img info %s: %w", disk, err)
	}
	var info struct {
		BackingFilename string `json:"backing-filename"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("qemu-img info %s: %w", disk, err)
	}
	return info.BackingFilename, nil
}
