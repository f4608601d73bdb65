package fs

import (
	"context"
	"fmt"
	"os"
	"sort"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// The root directory's listing: images known locally, their nova names, the writable area.

func (f *FS) OpenDir(cancel <-chan struct{}, input *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if input.NodeId != fuse.FUSE_ROOT_ID {
		return fuse.ENOTDIR
	}
	if f.deny(&input.InHeader, "opendir") {
		return fuse.EACCES
	}
	return fuse.OK
}

func (f *FS) ReleaseDir(input *fuse.ReleaseIn) {}

// ReadDir lists the images known locally (not their resized views, which are endless), and
// the aliases of those that have them. Offsets are positions in that sorted list.
func (f *FS) ReadDir(cancel <-chan struct{}, input *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	defer f.track("readdir")()
	if input.NodeId != fuse.FUSE_ROOT_ID {
		return fuse.ENOTDIR
	}
	if f.deny(&input.InHeader, "readdir") {
		return fuse.EACCES
	}
	entries, err := f.entries(ctxOf(cancel))
	if err != nil {
		f.cfg.Logger.Error("readdir failed", "err", err)
		return fuse.EIO
	}
	for i := int(input.Offset); i < len(entries); i++ {
		e := entries[i]
		e.Off = uint64(i + 1)
		if !out.AddDirEntry(e) {
			break
		}
	}
	return fuse.OK
}

func (f *FS) entries(ctx context.Context) ([]fuse.DirEntry, error) {
	ds, err := f.cfg.Images.Images(ctx)
	if err != nil {
		return nil, err
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].String() < ds[j].String() })
	entries := []fuse.DirEntry{
		{Name: ".", Mode: fuse.S_IFDIR, Ino: fuse.FUSE_ROOT_ID},
		{Name: "..", Mode: fuse.S_IFDIR, Ino: fuse.FUSE_ROOT_ID},
	}
	for _, d := range ds {
		entries = append(entries, fuse.DirEntry{Name: d.String(), Mode: fuse.S_IFREG, Ino: inodeNumber(d, 0)})
	}
	if f.cfg.Aliases != nil {
		as, err := f.cfg.Aliases.Aliases(ctx)
		if err != nil {
			return nil, fmt.Errorf("aliases: %w", err)
		}
		names := make([]string, 0, len(as))
		for n := range as {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			entries = append(entries, fuse.DirEntry{Name: n, Mode: fuse.S_IFREG, Ino: inodeNumber(as[n], 0)})
		}
	}
	return append(entries, f.fileEntries()...), nil
}

// fileEntries lists the writable area for readdir.
func (f *FS) fileEntries() []fuse.DirEntry {
	if f.files == nil {
		return nil
	}
	des, _ := os.ReadDir(f.files.dir)
	sort.Slice(des, func(i, j int) bool { return des[i].Name() < des[j].Name() })
	var out []fuse.DirEntry
	for _, d := range des {
		n, err := f.files.add(d.Name())
		if err != nil {
			continue
		}
		out = append(out, fuse.DirEntry{Name: d.Name(), Mode: fuse.S_IFREG, Ino: n})
	}
	return out
}
