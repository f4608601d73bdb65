package agent

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance"
)

// DomainPrefix starts the name of every libvirt domain the agent makes: `basefs-<ID>`.
const DomainPrefix = "basefs-"

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

// DomainName returns the libvirt domain name of instance id.
func DomainName(id string) string { return DomainPrefix + id }

// idFromDomain returns the instance ID of a domain name, if it is one of the agent's.
func idFromDomain(name string) (string, bool) {
	id, ok := strings.CutPrefix(name, DomainPrefix)
	if !ok || ValidateID(id) != nil {
		return "", false
	}
	return id, true
}

// View names a file in the basefs mount: an image, or a resized view of it.
type View struct {
	Image chunkstore.Digest
	// Ref, when set, names the image in the mount instead of its digest: nova's name for a
	// Glance image (the hex SHA-1 of its id), which works before the image has a digest.
	Ref string
	// GiB is N for the resized view `<digest>_<N>` (the image zero-extended to N GiB), 0 for
	// the image itself.
	GiB int64
}

// String returns the view's file name in the mount.
func (v View) String() string {
	ref := v.Ref
	if ref == "" {
		ref = v.Image.String()
	}
	if v.GiB == 0 {
		return ref
	}
	return ref + "_" + strconv.FormatInt(v.GiB, 10)
}

// Size returns the view's size given its image's size.
func (v View) Size(imageSize int64) int64 {
	if v.GiB == 0 {
		return imageSize
	}
	return v.GiB * GiB
}

// PickView returns the view an instance disk of diskSize bytes is backed by: the image itself
// when the sizes are equal, else the smallest resized view `<digest>_<N>` that holds the disk
// (N = diskSize in GiB, rounded up). nova sizes disks in whole GiB, so its view is exactly the
// disk; for other sizes the overlay is smaller than its backing file, which qcow2 allows (the
// guest sees diskSize bytes). A disk smaller than the image is an error: it would cut the
// image off.
func PickView(image chunkstore.Digest, imageSize, diskSize int64) (View, error) {
	if diskSize < imageSize {
		return View{}, fmt.Errorf("disk size %s (%d bytes) is smaller than the image (%s, %d bytes): give a --disk-size of at least %s",
			FormatSize(diskSize), diskSize, FormatSize(imageSize), imageSize, FormatSize(imageSize))
	}
	if diskSize == imageSize {
		return View{Image: image}, nil
	}
	return View{Image: image, GiB: (diskSize + GiB - 1) / GiB}, nil
}

// ParseView parses a file name of the basefs mount: `<digest>` or `<digest>_<N>` with N a
// canonical decimal ≥ 1. (The daemon's own parser lives in package fs, which the agent does
// not import; both follow nova's `<base>_<N>` naming.)
func ParseView(name string) (View, error) {
	ref, n, resized := strings.Cut(name, "_")
	d, err := chunkstore.ParseDigest(ref)
	if err != nil {
		return View{}, fmt.Errorf("view %q: %w", truncate(name), err)
	}
	if !resized {
		return View{Image: d}, nil
	}
	if n == "" || n[0] == '0' || len(n) > 8 {
		return View{}, fmt.Errorf("view %q: bad size %q", truncate(name), truncate(n))
	}
	for i := 0; i < len(n); i++ {
		if n[i] < '0' || n[i] > '9' {
			return View{}, fmt.Errorf("view %q: bad size %q", truncate(name), truncate(n))
		}
	}
	g, _ := strconv.ParseInt(n, 10, 64) // ≤ 8 digits: cannot overflow
	return View{Image: d, GiB: g}, nil
}

// ImageRef is an image reference given to spawn: an image digest, or a Glance image id.
type ImageRef struct {
	Digest   chunkstore.Digest // zero for a Glance reference
	GlanceID string            // set for glance://<id>
}

// String returns the reference as given.
func (r ImageRef) String() string {
	if r.GlanceID != "" {
		return glance.Scheme + r.GlanceID
	}
	return r.Digest.String()
}

// ParseImageRef parses an image reference given to spawn: an image digest (64 lower-case hex
// characters, as `basefs import` prints it) or glance://<image-id> (a lower-case UUID).
func ParseImageRef(ref string) (ImageRef, error) {
	if glance.IsRef(ref) {
		id, err := glance.ParseRef(ref)
		if err != nil {
			return ImageRef{}, err
		}
		return ImageRef{GlanceID: id}, nil
	}
	d, err := chunkstore.ParseDigest(ref)
	if err != nil {
		return ImageRef{}, fmt.Errorf("image reference: %w (want an image digest as `basefs import` prints it, or glance://<image-id>)", err)
	}
	return ImageRef{Digest: d}, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}
