package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/basefs/basefs/chunkstore"
)

// InUseImages returns which images back which instances, the way nova's image cache manager
// finds the bases in use: it reads the backing file of every `<instancesPath>/*/disk` with
// `qemu-img info` and maps the backing file's name (a view: `<digest>` or `<digest>_<N>`) to
// its image. Instance IDs are sorted per image. A disk whose backing file is not a basefs view
// is not counted; a directory without a disk (a spawn in progress) is skipped, and so, without
// being looked into, is every entry whose name is not an instance ID (ValidateID) — `_base`
// in particular, which may be the daemon's own mount (the daemon must not call into itself).
// nova's instance directories (UUIDs) are valid IDs. Any disk it cannot read makes it fail: a
// cache manager must then remove nothing.
func InUseImages(instancesPath string) (map[chunkstore.Digest][]string, error) {
	return inUseImages(context.Background(), instancesPath, "qemu-img", nil)
}

// InUseImagesAliased is InUseImages that also counts backing files named by nova's name for a
// Glance image (`<sha1 of image id>[_<N>]`), mapped to digests by alias (a name alias does not
// know is not counted: such an image has no local manifest for cleanup to remove).
func InUseImagesAliased(instancesPath string, alias func(name string) (chunkstore.Digest, bool)) (map[chunkstore.Digest][]string, error) {
	return inUseImages(context.Background(), instancesPath, "qemu-img", alias)
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
		v, err := ParseView(filepath.Base(backing))
		if err != nil {
			name, _, _ := strings.Cut(filepath.Base(backing), "_")
			d, ok := chunkstore.Digest{}, false
			if alias != nil {
				d, ok = alias(name)
			}
			if !ok {
				continue // not a basefs view
			}
			v.Image = d
		}
		used[v.Image] = append(used[v.Image], e.Name())
	}
	return used, nil
}

// backingFile returns the backing file a disk names ("" if none). -U reads the image of a
// running guest (qemu holds a lock on it).
func backingFile(ctx context.Context, qemuImg, disk string) (string, error) {
	out, err := exec.CommandContext(ctx, qemuImg, "info", "-U", "--output=json", disk).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("qemu-img info %s: %w: %s", disk, err, strings.TrimSpace(string(ee.Stderr)))
		}
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
