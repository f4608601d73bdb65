package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// scaleExtents is the scale scenario's image content: the same 32 MiB of data at every
// size, as 32 extents of 1 MiB spread evenly; holes elsewhere.
func scaleExtents(size int64) []extent {
	const n = 32
	step := size / n / MiB * MiB
	var xs []extent
	for i := range int64(n) {
		xs = append(xs, extent{i * step, MiB})
	}
	return xs
}

// runScale: the daemon's memory and sequential read throughput against image size.
func runScale(ctx context.Context, e *env, r *Result) error {
	if err := needFUSE(); err != nil {
		return err
	}
	if err := needTools("dd"); err != nil {
		return err
	}
	o := e.opts
	sizes := slices.Clone(o.ScaleSizes)
	slices.Sort(sizes)
	r.Measures = "For each image size, a fresh `basefs mount` daemon serves one image whose chunks are all in " +
		"its local state; dd reads the whole image once (1 MiB blocks, O_DIRECT, so every byte is served by " +
		"the daemon), then the daemon's peak and current resident memory are read from /proc/PID/status " +
		"(VmHWM, VmRSS). Every size holds the same 32 MiB of data (32 × 1 MiB spread evenly), the rest " +
		"holes, so any growth of memory comes from the image's size (manifest, per-chunk state), not from " +
		"cached data. Baseline for throughput: the same dd on the plain sparse file; for memory, the " +
		"daemon at the smallest size (ratio = growth)."
	r.set("image sizes", "%s", sizesText(sizes))
	r.set("daemon", "`basefs mount` defaults (memory cache 256 MiB), no origin, background fill and scrub off; a new process per size and run")
	r.set("runs", "%d, size order reversed every other run, basefs and plain file alternating", o.Runs)

	dir, err := e.dir("scale")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	raws := map[int64]string{}
	states := map[int64]string{}
	digests := map[int64]string{}
	for _, size := range sizes {
		raws[size] = filepath.Join(dir, fmt.Sprintf("image-%s.raw", sizeLabel(size)))
		states[size] = filepath.Join(dir, "state-"+sizeLabel(size))
		e.logf("%s: writing and importing the image", sizeText(size))
		if err := writeImage(raws[size], size, uint64(500+size/GiB), scaleExtents(size)); err != nil {
			return err
		}
		imp, err := e.importImage(ctx, states[size], raws[size])
		if err != nil {
			return err
		}
		digests[size] = imp.Digest
	}
	got := series{}
	for run := range o.Runs {
		order := slices.Clone(sizes)
		if run%2 == 1 {
			slices.Reverse(order)
		}
		for i, size := range order {
			ways := []string{"basefs", "plain"}
			if (run+i)%2 == 1 {
				slices.Reverse(ways)
			}
			for _, w := range ways {
				switch w {
				case "basefs":
					d, err := e.startDaemon(ctx, states[size], filepath.Join(dir, "mnt"), nil)
					if err != nil {
						return err
					}
					_, idle, merr := procMemory(d.PID())
					took, err := ddRead(ctx, filepath.Join(d.Mount, digests[size]), 0, 0, true)
					hwm, rss, merr2 := procMemory(d.PID())
					d.Stop()
					if err = errJoin(err, merr, merr2); err != nil {
						return err
					}
					got.add(key("basefs", size, "mbs"), float64(size)/took.Seconds()/1e6)
					got.add(key("basefs", size, "hwm"), float64(hwm)/float64(MiB))
					got.add(key("basefs", size, "rss"), float64(rss)/float64(MiB))
					got.add(key("basefs", size, "idle"), float64(idle)/float64(MiB))
					e.logf("run %d/%d %-7s basefs: %7.0f MB/s, VmHWM %.1f MiB, VmRSS %.1f MiB (%.1f MiB before the read)",
						run+1, o.Runs, sizeText(size), float64(size)/took.Seconds()/1e6, float64(hwm)/float64(MiB), float64(rss)/float64(MiB), float64(idle)/float64(MiB))
				case "plain":
					took, err := ddRead(ctx, raws[size], 0, 0, true)
					if err != nil {
						return err
					}
					got.add(key("plain", size, "mbs"), float64(size)/took.Seconds()/1e6)
					e.logf("run %d/%d %-7s plain file: %7.0f MB/s", run+1, o.Runs, sizeText(size), float64(size)/took.Seconds()/1e6)
				}
			}
		}
	}
	smallest := sizes[0]
	first := fmt.Sprintf("daemon at %s", sizeText(smallest))
	var hwms []Row
	for _, size := range sizes {
		r.add("sequential read (dd 1 MiB, O_DIRECT), "+sizeText(size), "MB/s", "higher", "basefs", got[key("basefs", size, "mbs")], "plain file", got[key("plain", size, "mbs")])
	}
	for _, size := range sizes {
		var base []float64
		if size != smallest {
			base = got[key("basefs", smallest, "hwm")]
		}
		hwms = append(hwms, r.add("daemon peak RSS (VmHWM), "+sizeText(size), "MiB", "lower", "basefs", got[key("basefs", size, "hwm")], first, base))
	}
	for _, size := range sizes {
		var base []float64
		if size != smallest {
			base = got[key("basefs", smallest, "rss")]
		}
		r.add("daemon RSS after the read (VmRSS), "+sizeText(size), "MiB", "lower", "basefs", got[key("basefs", size, "rss")], first, base)
	}
	var parts []string
	for i, size := range sizes {
		parts = append(parts, fmt.Sprintf("%s MiB at %s", fmtNum(hwms[i].Basefs.Median), sizeText(size)))
	}
	growth := hwms[len(hwms)-1].Basefs.Median / hwms[0].Basefs.Median
	verdict := "flat: memory does not grow with image size"
	if growth > 1.25 {
		verdict = "memory grows with image size"
	}
	r.highlight("daemon peak RSS after reading the whole image: %s (largest ÷ smallest = %s: %s)", joinComma(parts), fmtNum(growth), verdict)
	var tp []string
	for _, size := range sizes {
		tp = append(tp, fmt.Sprintf("%s MB/s at %s (plain file %s)", fmtNum(Summarize(got[key("basefs", size, "mbs")]).Median), sizeText(size), fmtNum(Summarize(got[key("plain", size, "mbs")]).Median)))
	}
	r.highlight("sequential O_DIRECT read of the whole (mostly hole) image: %s", joinComma(tp))

	line := func(file, title, ylabel string, ss []struct{ name, way, m string }) Figure {
		f := Figure{File: file, Kind: "line", Title: title, XLabel: "image size", YLabel: ylabel, LogX: len(sizes) > 1}
		for _, size := range sizes {
			f.Labels = append(f.Labels, sizeText(size))
			f.X = append(f.X, float64(size)/float64(GiB))
		}
		for _, s := range ss {
			sr := Series{Name: s.name}
			for _, size := range sizes {
				sr.Points = append(sr.Points, Summarize(got[key(s.way, size, s.m)]))
			}
			f.Series = append(f.Series, sr)
		}
		return f
	}
	r.Figures = append(r.Figures,
		line("scale-rss", "basefs daemon memory against image size", "MiB (median, min–max)", []struct{ name, way, m string }{
			{"peak RSS (VmHWM)", "basefs", "hwm"}, {"RSS after the read (VmRSS)", "basefs", "rss"}, {"RSS before the read", "basefs", "idle"}}),
		line("scale-throughput", "Sequential O_DIRECT read of the whole image", "MB/s (median, min–max)", []struct{ name, way, m string }{
			{"basefs", "basefs", "mbs"}, {"plain file", "plain", "mbs"}}),
	)
	return nil
}

func joinComma(xs []string) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += ", "
		}
		s += x
	}
	return s
}
