package fs

import (
	"context"
	"fmt"
	"sort"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// The root directory's listing: images known locally, their nova names, the writable area.

// readDir lists the images known locally (not their resized views, which are endless), and
// the aliases of those that have them. Offsets are positions in that sorted list.
func (r *rootDir) readDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if r.cfg.deny(&in.InHeader, "readdir") {
		return fuse.EACCES
	}
	entries, err := r.entries(ctxOf(cancel))
	if err != nil {
		r.cfg.Logger.Error("readdir failed", "err", err)
		return fuse.EIO
	}
	for i := int(in.Offset); i < len(entries); i++ {
		e := entries[i]
		e.Off = uint64(i + 1)
		if !out.AddDirEntry(e) {
			break
		}
	}
	return fuse.OK
}

func (r *rootDir) entries(ctx context.Context) ([]fuse.DirEntry, error) {
	ds, err := r.cfg.Images.Images(ctx)
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
	if r.cfg.Aliases != nil {
		as, err := r.cfg.Aliases.Aliases(ctx)
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
	if r.area != nil {
		entries = append(entries, r.area.entries()...)
	}
	return entries, nil
}
