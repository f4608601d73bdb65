package importer

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/basefs/basefs/chunkstore/child"
	"github.com/basefs/basefs/chunkstore/inspect"
)

// ImageInfo is what qemu-img says about a file.
type ImageInfo struct {
	Format          string `json:"format"`
	VirtualSize     int64  `json:"virtual-size"`
	BackingFilename string `json:"backing-filename"`
	FormatSpecific  struct {
		Type string `json:"type"`
		Data struct {
			DataFile   string `json:"data-file"`
			CreateType string `json:"create-type"`
			Extents    []struct {
				Filename string `json:"filename"`
			} `json:"extents"`
		} `json:"data"`
	} `json:"format-specific"`
}

// source returns how qemu-img is told to open path as format: never by probing, and a
// qcow2 with its backing chain cut (`backing: null`), so nothing else is opened even if a
// header the inspector passed names a backing file.
func source(path, format string) []string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	if format == "qcow2" {
		spec, _ := json.Marshal(map[string]any{
			"driver": "qcow2", "backing": nil,
			"file": map[string]string{"driver": "file", "filename": abs},
		})
		return []string{"json:" + string(spec)}
	}
	return []string{"-f", format, abs}
}

// Inspect runs `qemu-img info --output=json` on path read as format (never probed), under
// nova's limits for it (child.QemuImgInfo), and refuses (inspect.ErrRefused) what qemu-img
// finds that would read another file: a backing file, a data file, a VMDK extent other than
// the file itself, a VMDK createType nova does not allow.
func Inspect(ctx context.Context, path, format string) (*ImageInfo, error) {
	args := append([]string{"info", "--output=json"}, source(path, format)...)
	out, err := child.Run(ctx, child.QemuImgInfo, "qemu-img", args...)
	if err != nil {
		return nil, err
	}
	var info ImageInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return nil, fmt.Errorf("qemu-img info %s: unreadable answer: %w", path, err)
	}
	if info.Format == "" {
		return nil, fmt.Errorf("qemu-img info %s: no format reported", path)
	}
	refuse := func(why string) error {
		return &inspect.Refusal{Format: info.Format, Reason: "qemu-img: " + why}
	}
	d := info.FormatSpecific.Data
	switch {
	case info.Format != format:
		return nil, refuse(fmt.Sprintf("read as %s but reports %s", format, info.Format))
	case info.BackingFilename != "":
		return nil, refuse(fmt.Sprintf("backing file %q", info.BackingFilename))
	case d.DataFile != "":
		return nil, refuse(fmt.Sprintf("data file %q", d.DataFile))
	}
	if format == "vmdk" {
		if d.CreateType != "monolithicSparse" && d.CreateType != "streamOptimized" {
			return nil, refuse(fmt.Sprintf("VMDK create-type %q is not allowed", d.CreateType))
		}
		self, _ := filepath.Abs(path)
		for _, e := range d.Extents {
			if e.Filename != self && e.Filename != path {
				return nil, refuse(fmt.Sprintf("VMDK extent %q is not the image itself", e.Filename))
			}
		}
	}
	return &info, nil
}

// convert writes path (format) as a raw image to dst, bounded by timeout; the space guard
// kills it when the state filesystem falls below its reserve.
func convert(ctx context.Context, path, format, dst string, timeout time.Duration) error {
	args := append(append([]string{"convert", "-q"}, source(path, format)...), "-O", "raw", dst)
	_, err := child.Run(ctx, child.Limits{Timeout: timeout}, "qemu-img", args...)
	return err
}
