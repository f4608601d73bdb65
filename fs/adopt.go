package fs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore/inspect"
)

// adopt is the rename of a writable file to an image name, from the writable area into the
// image tree: nova's own download (`<sha1>.part` → `<sha1>`) becomes a content-addressed
// image (Maintainer.Adopt), served verified from then on.
func (r *rootDir) adopt(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if r.cfg.Maintainer == nil || in.Flags&^uint32(1) != 0 { // RENAME_NOREPLACE only
		return fuse.Status(syscall.EROFS)
	}
	files := r.area.files
	resent, st := r.area.begin(&in.InHeader, "adopt "+oldName+" "+newName)
	if !st.Ok() {
		return st
	}
	ctx := ctxOf(cancel)
	// The download is opened beneath the area without following a link, and adopted
	// through that descriptor: whatever the name is swapped for meanwhile is not read.
	src, err := files.openAt(filepath.Join(files.dir, oldName), os.O_RDONLY, 0)
	if err == nil {
		defer src.Close()
	}
	var fi os.FileInfo
	if err == nil {
		fi, err = src.Stat()
	}
	n, _ := ParseName(newName)
	if err != nil {
		if resent && errors.Is(err, os.ErrNotExist) {
			if _, ok, _ := r.images.resolve(ctx, n.Ref); ok {
				return fuse.OK // adopted by the process that died
			}
		}
		return fuse.Status(errnoOf(err))
	}
	if !fi.Mode().IsRegular() {
		return fuse.EINVAL
	}
	if n.ViewGiB != 0 {
		return fuse.EINVAL // a resized view is computed, never stored
	}
	if in.Flags&1 != 0 { // RENAME_NOREPLACE
		if _, ok, _ := r.images.resolve(ctx, n.Ref); ok {
			return fuse.Status(syscall.EEXIST)
		}
	}
	start := time.Now()
	// This process's pid, not self: the importer may hand the path to a child (qemu-img).
	p := "/proc/" + strconv.Itoa(os.Getpid()) + "/fd/" + strconv.Itoa(int(src.Fd()))
	d, err := r.cfg.Maintainer.Adopt(context.WithoutCancel(ctx), p, newName)
	if err != nil {
		r.cfg.Logger.Error("adoption of a download as an image failed", "from", oldName, "name", newName, "err", err)
		if errors.Is(err, cache.ErrNameMismatch) {
			return fuse.EINVAL
		}
		if errors.Is(err, inspect.ErrRefused) {
			return fuse.EACCES // an image nova would refuse (a backing file, …): never adopted
		}
		return fuse.EIO
	}
	files.mu.Lock()
	fileNode, known := files.byName[oldName]
	files.mu.Unlock()
	if known {
		r.images.nodes.alias(fileNode, d) // the kernel's node for the file reads the image
	}
	if errno := files.unlink(oldName); errno != 0 && errno != syscall.ENOENT {
		r.cfg.Logger.Error("adopted download left behind", "from", oldName, "err", errno)
	}
	if r.plain(newName) {
		// A plain file of that name (written directly) would hide the adopted image.
		files.unlink(newName)
	}
	r.cfg.Logger.Info("adopted a download as an image", "from", oldName, "name", newName, "image", d.String(), "took", time.Since(start))
	r.kernel.lookAgain(newName, oldName) // the kernel moved the file's node to newName
	return fuse.OK
}
