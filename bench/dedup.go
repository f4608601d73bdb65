package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// dedupFraction is the share of chunks in which the two images differ.
const dedupFraction = 0.05

// storedBytes is what a basefs state occupies on disk for its images: its chunk objects and
// manifests (allocated blocks).
func storedBytes(state string) (int64, error) {
	var n int64
	for _, sub := range []string{"chunks", "manifests"} {
		m, err := treeAllocated(filepath.Join(state, sub))
		if err != nil {
			return 0, err
		}
		n += m
	}
	return n, nil
}

// treeAllocated sums the allocated bytes of the regular files under dir.
func treeAllocated(dir string) (int64, error) {
	var n int64
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			a, err := allocatedBytes(p)
			if err != nil {
				return err
			}
			n += a
		}
		return nil
	})
	return n, err
}

// runDedup: two images that differ in 5 % of their chunks, stored by basefs and as nova's
// _base files.
func runDedup(ctx context.Context, e *env, r *Result) error {
	o := e.opts
	size := o.DedupSize
	chunk := MiB // basefs import's default chunk size
	n := int(size / chunk)
	k := max(1, int(float64(n)*dedupFraction+0.5))
	r.Measures = fmt.Sprintf("Image A is %s of pseudo-random (incompressible) data; image B is A with %d of its "+
		"%d 1 MiB chunks (%.0f%%) replaced by other random data. basefs: `basefs import` of A into an empty "+
		"state, then of B into the same state; bytes stored = the allocated size of the state's chunk "+
		"objects and manifests after each. Baseline: nova's _base keeps each image as its own raw file; "+
		"bytes stored = the allocated size of A's and B's raw files. The ratio both ÷ one is the cost of "+
		"the second, similar image.", sizeText(size), k, n, 100*float64(k)/float64(n))
	r.set("images", "%s each, dense, 1 MiB chunks, %d of %d chunks differ", sizeText(size), k, n)
	r.set("runs", "%d (a fresh state each run; the figures are deterministic)", o.Runs)

	dir, err := e.dir("dedup")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	base, err := e.dir("dedup", "_base")
	if err != nil {
		return err
	}
	a, b := filepath.Join(base, "a.raw"), filepath.Join(base, "b.raw")
	e.logf("writing two %s images differing in %d chunks", sizeText(size), k)
	if err := writeImage(a, size, 601, []extent{{0, size}}); err != nil {
		return err
	}
	if err := copyFile(a, b); err != nil {
		return err
	}
	var xs []extent
	for _, i := range rand.New(rand.NewPCG(602, 603)).Perm(n)[:k] {
		xs = append(xs, extent{int64(i) * chunk, chunk})
	}
	if err := overwrite(b, 604, xs); err != nil {
		return err
	}

	got := series{}
	for run := range o.Runs {
		state := filepath.Join(dir, fmt.Sprintf("state-%d", run))
		ra, err := e.importImage(ctx, state, a)
		if err != nil {
			return err
		}
		one, err := storedBytes(state)
		if err != nil {
			return err
		}
		rb, err := e.importImage(ctx, state, b)
		if err != nil {
			return err
		}
		if ra.Digest == rb.Digest {
			return fmt.Errorf("the two images have the same digest")
		}
		both, err := storedBytes(state)
		if err != nil {
			return err
		}
		os.RemoveAll(state)
		got.add("basefs one", float64(one)/float64(MiB))
		got.add("basefs both", float64(both)/float64(MiB))
		got.add("basefs ratio", float64(both)/float64(one))
		got.add("basefs new chunks", float64(rb.ChunksStored))

		na, err := allocatedBytes(a)
		if err != nil {
			return err
		}
		nb, err := allocatedBytes(b)
		if err != nil {
			return err
		}
		got.add("nova one", float64(na)/float64(MiB))
		got.add("nova both", float64(na+nb)/float64(MiB))
		got.add("nova ratio", float64(na+nb)/float64(na))
		e.logf("run %d/%d: basefs %.0f → %.0f MiB (%d new chunks for B), nova _base %.0f → %.0f MiB",
			run+1, o.Runs, float64(one)/float64(MiB), float64(both)/float64(MiB), rb.ChunksStored, float64(na)/float64(MiB), float64(na+nb)/float64(MiB))
	}
	nova := "nova _base (raw files)"
	rOne := r.add("bytes stored, image A", "MiB", "lower", "basefs", got["basefs one"], nova, got["nova one"])
	rBoth := r.add("bytes stored, images A and B", "MiB", "lower", "basefs", got["basefs both"], nova, got["nova both"])
	rRatio := r.add("bytes stored for both ÷ for one", "×", "lower", "basefs", got["basefs ratio"], nova, got["nova ratio"])
	r.add("chunks stored for B after A", "chunks", "lower", "basefs", got["basefs new chunks"], "", nil)
	r.highlight("two %s images differing in %.0f%% of their chunks: basefs stores %s× the bytes of one (%s MiB for both); nova's _base %s× (%s MiB)",
		sizeText(size), 100*float64(k)/float64(n), fmtNum(rRatio.Basefs.Median), fmtNum(rBoth.Basefs.Median),
		fmtNum(rRatio.Baseline.Median), fmtNum(rBoth.Baseline.Median))
	r.Figures = append(r.Figures, Figure{File: "dedup", Kind: "bar", Title: "Bytes stored for similar images",
		YLabel: "MiB on disk", Labels: []string{"image A", "images A and B"},
		Series: []Series{
			{Name: "basefs", Points: []Summary{rOne.Basefs, rBoth.Basefs}},
			{Name: nova, Points: []Summary{*rOne.Baseline, *rBoth.Baseline}},
		}})
	return nil
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// overwrite writes pseudo-random data (ChaCha8 from seed) over the extents of an existing file.
func overwrite(path string, seed uint64, xs []extent) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".extents"
	if err := writeImage(tmp, fi.Size(), seed, xs); err != nil {
		return err
	}
	defer os.Remove(tmp)
	src, err := os.Open(tmp)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for _, x := range xs {
		for done := int64(0); done < x.Len; {
			m := min(int64(len(buf)), x.Len-done)
			if _, err := src.ReadAt(buf[:m], x.Off+done); err != nil {
				dst.Close()
				return err
			}
			if _, err := dst.WriteAt(buf[:m], x.Off+done); err != nil {
				dst.Close()
				return err
			}
			done += m
		}
	}
	return dst.Close()
}
