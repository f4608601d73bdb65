package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Concurrent-cold readers: each reads this many regions of regionMiB, one dd process each.
const (
	regionsPerReader = 8
	regionMiB        = 4
)

// readerPlan is what each reader reads: MiB offsets of its regions.
func readerPlan(readers int, sizeMiB int64, seed uint64) [][]int64 {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	plan := make([][]int64, readers)
	for i := range plan {
		for range regionsPerReader {
			plan[i] = append(plan[i], rng.Int64N(sizeMiB-regionMiB+1))
		}
	}
	return plan
}

// uniqueMiB counts the MiB the plan touches (its regions' union).
func uniqueMiB(plan [][]int64) int64 {
	seen := map[int64]bool{}
	for _, p := range plan {
		for _, off := range p {
			for m := off; m < off+regionMiB; m++ {
				seen[m] = true
			}
		}
	}
	return int64(len(seen))
}

// runReaders starts every reader at once (each a goroutine running its regions' dd
// processes one after another, O_DIRECT) on path and returns the time until the last one
// finished.
func runReaders(ctx context.Context, path string, plan [][]int64) (time.Duration, error) {
	t0 := time.Now()
	errs := make([]error, len(plan))
	var wg sync.WaitGroup
	for i, regions := range plan {
		wg.Go(func() {
			for _, off := range regions {
				if _, err := ddRead(ctx, path, off, regionMiB, true); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(t0), errJoin(errs...)
}

// runConcurrentCold: N readers of one cold image at once, basefs vs nova's eager path.
func runConcurrentCold(ctx context.Context, e *env, r *Result) error {
	if err := needFUSE(); err != nil {
		return err
	}
	if err := needTools("dd"); err != nil {
		return err
	}
	o := e.opts
	size := o.ColdSize
	plan := readerPlan(o.Readers, size/MiB, 401)
	unique := uniqueMiB(plan)
	requested := int64(o.Readers * regionsPerReader * regionMiB)
	r.Measures = fmt.Sprintf("%d reader processes start at once on one cold image; each reads %d regions of %d MiB "+
		"at random MiB offsets (dd, O_DIRECT, one after another; the readers' regions overlap). basefs: a "+
		"`basefs mount` with an empty state whose origin is the published layout over HTTP, the readers on the "+
		"image's file in the mount. Baseline, nova's eager path: download the whole raw image over HTTP "+
		"from the same origin into a plain _base, then the same readers on that file. Measured: the time "+
		"from the start until the last reader finished, and the bytes through the origin link. Origin bytes ÷ "+
		"unique bytes touched is 1 when every touched chunk crosses the link once, however many readers want it.",
		o.Readers, regionsPerReader, regionMiB)
	r.set("image", "%s of pseudo-random data (no holes), 1 MiB chunks", sizeText(size))
	r.set("readers", "%d × %d regions × %d MiB = %d MiB requested, %d MiB unique (same plan every run)", o.Readers, regionsPerReader, regionMiB, requested, unique)
	r.set("origin link", "%s, +%s before each response", bandwidthText(o.Bandwidth), o.Latency)
	r.set("daemon", "`basefs mount` defaults with background fill and scrub off")
	r.set("runs", "%d, basefs and eager alternating", o.Runs)

	var cl cleanups
	defer cl.run()
	www, err := e.dir("concurrent-cold", "www")
	if err != nil {
		return err
	}
	rawDir, _ := e.dir("concurrent-cold", "www", "raw")
	pub, _ := e.dir("concurrent-cold", "www", "pub")
	originState, _ := e.dir("concurrent-cold", "origin-state")
	novaBase, _ := e.dir("concurrent-cold", "nova", "_base")
	raw := filepath.Join(rawDir, "image.raw")
	e.logf("writing a %s image and publishing it", sizeText(size))
	if err := writeImage(raw, size, 402, []extent{{0, size}}); err != nil {
		return err
	}
	imp, err := e.importPublished(ctx, originState, pub, raw)
	if err != nil {
		return err
	}
	os.RemoveAll(originState)
	org, err := startOrigin(www, o.Bandwidth, o.Latency)
	if err != nil {
		return err
	}
	cl.add(org.Close)

	got := series{}
	for run := range o.Runs {
		ways := []string{"basefs", "eager"}
		if run%2 == 1 {
			slices.Reverse(ways)
		}
		for _, w := range ways {
			b0 := org.Shaper.Bytes()
			var took time.Duration
			switch w {
			case "basefs":
				state := filepath.Join(e.work, "concurrent-cold", fmt.Sprintf("state-%d", run))
				d, err := e.startDaemon(ctx, state, filepath.Join(e.work, "concurrent-cold", "mnt"), []string{org.URL + "/pub/"})
				if err != nil {
					return err
				}
				took, err = runReaders(ctx, filepath.Join(d.Mount, imp.Digest), plan)
				st, serr := d.Status(ctx)
				d.Stop()
				os.RemoveAll(state)
				if err != nil {
					return fmt.Errorf("basefs readers: %w", err)
				}
				if serr != nil {
					return serr
				}
				got.add("fetches", float64(st.Stats.Fetches()))
			case "eager":
				t0 := time.Now()
				local := filepath.Join(novaBase, "image.raw")
				if _, err := download(ctx, org.URL+"/raw/image.raw", local); err != nil {
					return err
				}
				dl := time.Since(t0)
				rt, err := runReaders(ctx, local, plan)
				os.Remove(local)
				if err != nil {
					return fmt.Errorf("eager readers: %w", err)
				}
				took = dl + rt
			}
			bytes := org.Shaper.Bytes() - b0
			got.add(key(w, "time"), took.Seconds())
			got.add(key(w, "origin"), float64(bytes)/float64(MiB))
			got.add(key(w, "ratio"), float64(bytes)/float64(unique*MiB))
			e.logf("run %d/%d %-6s last reader done after %6.2f s, origin %7.1f MiB (%.3f× the %d MiB touched)",
				run+1, o.Runs, w, took.Seconds(), float64(bytes)/float64(MiB), float64(bytes)/float64(unique*MiB), unique)
		}
	}
	eager := "nova eager (download, then read)"
	rt := r.add(fmt.Sprintf("time for the last of %d readers", o.Readers), "s", "lower", "basefs (cold)", got[key("basefs", "time")], eager, got[key("eager", "time")])
	rb := r.add("origin bytes", "MiB", "lower", "basefs (cold)", got[key("basefs", "origin")], eager, got[key("eager", "origin")])
	rr := r.add("origin bytes ÷ unique bytes touched", "×", "lower", "basefs (cold)", got[key("basefs", "ratio")], eager, got[key("eager", "ratio")])
	r.add("chunk fetches", "fetches", "lower", "basefs (cold)", got["fetches"], "", nil)
	r.highlight("%d concurrent readers of one cold %s image: origin bytes ÷ unique bytes touched = %s (%s MiB for %d MiB touched, %d MiB requested); eager %s. Last reader done after %s s vs %s s eager (%s faster)",
		o.Readers, sizeText(size), fmtNum(rr.Basefs.Median), fmtNum(rb.Basefs.Median), unique, requested,
		fmtNum(rr.Baseline.Median), fmtNum(rt.Basefs.Median), fmtNum(rt.Baseline.Median), speedup(rt))
	r.Figures = append(r.Figures,
		Figure{File: "concurrent-cold-bytes", Kind: "bar", Title: fmt.Sprintf("%d readers of one cold image: bytes", o.Readers), YLabel: "MiB",
			Labels: []string{"origin bytes", "unique bytes touched", "bytes requested"},
			Series: []Series{
				{Name: "basefs (cold)", Points: []Summary{rb.Basefs, Summarize([]float64{float64(unique)}), Summarize([]float64{float64(requested)})}},
				{Name: eager, Points: []Summary{*rb.Baseline, Summarize([]float64{float64(unique)}), Summarize([]float64{float64(requested)})}},
			}},
		Figure{File: "concurrent-cold-time", Kind: "bar", Title: fmt.Sprintf("%d readers of one cold image: time for the last one", o.Readers), YLabel: "seconds (median, min–max)",
			Labels: []string{"time for the last reader"},
			Series: []Series{{Name: "basefs (cold)", Points: []Summary{rt.Basefs}}, {Name: eager, Points: []Summary{*rt.Baseline}}}},
	)
	return nil
}
