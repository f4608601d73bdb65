package agent

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/basefs/basefs/agent/nova"
	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/fs/names"
)

// DomainPrefix starts the name of every libvirt domain the agent makes: `basefs-<ID>`.
const DomainPrefix = "basefs-"

// MaxIDLen is the longest instance ID.
const MaxIDLen = nova.MaxIDLen

// ValidateID checks an instance ID (nova.ValidateID): 1 to 63 characters from [A-Za-z0-9._-],
// the first a letter or digit.
func ValidateID(id string) error { return nova.ValidateID(id) }

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
// canonical decimal ≥ 1 (names.Parse, the parser the file system uses).
func ParseView(name string) (View, error) {
	n, ok := names.Parse(name)
	if !ok {
		return View{}, fmt.Errorf("view %q: not `<digest>` or `<digest>_<N>`", truncate(name))
	}
	d, ok := n.Digest()
	if !ok {
		return View{}, fmt.Errorf("view %q: %q is not an image digest (64 hex digits)", truncate(name), truncate(n.Ref))
	}
	return View{Image: d, GiB: n.ViewGiB}, nil
}

// ImageRef is an image reference given to spawn: an image digest, or a Glance image id.
type ImageRef struct {
	Digest   chunkstore.Digest // zero for a Glance reference
	GlanceID string            // set for glance://<id>
}

// String returns the reference as given.
func (r ImageRef) String() string {
	if r.GlanceID != "" {
		return glanceref.Scheme + r.GlanceID
	}
	return r.Digest.String()
}

// ParseImageRef parses an image reference given to spawn: an image digest (64 lower-case hex
// characters, as `basefs import` prints it) or glance://<image-id> (a lower-case UUID).
func ParseImageRef(ref string) (ImageRef, error) {
	if glanceref.IsRef(ref) {
		id, err := glanceref.ParseRef(ref)
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
