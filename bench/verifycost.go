package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/fs"
)

// verifyJobs are the verify-cost scenario's patterns (O_DIRECT: buffered reads of a warm
// image are served by the page cache, where verification plays no part).
var verifyJobs = []fioJob{
	{"seq 1 MiB", "read", "1m", true, 1},
	{"rand 4 KiB", "randread", "4k", true, 1},
	{"rand 64 KiB", "randread", "64k", true, 1},
}

// runVerifyCost: warm O_DIRECT reads with read-time verification on and off, in-process.
func runVerifyCost(ctx context.Context, e *env, r *Result) error {
	if err := needFUSE(); err != nil {
		return err
	}
	if err := needTools("fio", "dd"); err != nil {
		return err
	}
	o := e.opts
	r.Measures = "The same warm image read with fio (O_DIRECT, psync, queue depth 1) through a basefs mount " +
		"served in this process (cache.New + fs.Mount over a local state holding every chunk), " +
		"alternately with read-time verification on (the product) and off through the bench-only switch " +
		"`(*cache.Cache).SetVerify(false)`. The switch empties the memory cache of verified chunks, so " +
		"after each switch the whole image is read once (not measured) before fio runs. With verification " +
		"off, local chunks are served without hashing but whole (no sub-block path); with it on, partial " +
		"reads of chunks not in memory hash only the 64 KiB sub-blocks they touch."
	r.set("image", "%s of pseudo-random data (no holes), 1 MiB chunks", sizeText(o.ReadSize))
	r.set("memory cache", "256 MiB (the daemon's default)")
	r.set("fio run", "%s per pattern and setting", o.FioRuntime)
	r.set("runs", "%d, on/off order alternated", o.Runs)

	var cl cleanups
	defer cl.run()
	dir, err := e.dir("verify-cost")
	if err != nil {
		return err
	}
	raw, stateDir := filepath.Join(dir, "image.raw"), filepath.Join(dir, "state")
	imp, err := e.denseImage(ctx, raw, stateDir, 201)
	if err != nil {
		return err
	}
	os.Remove(raw)
	st, err := local.Open(stateDir, local.Options{})
	if err != nil {
		return err
	}
	c, err := cache.New(cache.Config{Local: st, MemoryBytes: 256 << 20})
	if err != nil {
		return err
	}
	cl.add(c.Close)
	mnt, err := e.dir("verify-cost", "mnt")
	if err != nil {
		return err
	}
	srv, err := fs.Mount(mnt, fs.Config{Images: c}, false)
	if err != nil {
		return err
	}
	cl.add(func() { srv.Unmount() })
	img := filepath.Join(mnt, imp.Digest)

	got := series{}
	name := map[bool]string{true: "verified", false: "unverified"}
	for run := range o.Runs {
		for ji, j := range verifyJobs {
			order := []bool{true, false}
			if (run+ji)%2 == 1 {
				order = []bool{false, true}
			}
			for _, v := range order {
				c.SetVerify(v)
				if _, err := ddRead(ctx, img, 0, 0, true); err != nil {
					return err
				}
				res, err := fio(ctx, img, j, o.FioRuntime)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", name[v], j.label(), err)
				}
				got.add(key(name[v], j.label()), res.MBs)
				e.logf("run %d/%d %-24s %-10s %8.1f MB/s", run+1, o.Runs, j.label(), name[v], res.MBs)
			}
		}
	}
	c.SetVerify(true)
	if s := c.Stats(); s.ReadErrors != 0 || s.LocalCorrupt != 0 {
		return fmt.Errorf("%d read errors, %d corrupt chunks (want none)", s.ReadErrors, s.LocalCorrupt)
	}
	f := Figure{File: "verify-cost", Kind: "bar", Title: "Warm O_DIRECT reads, verification on vs off",
		YLabel: "MB/s (median, min–max)", Series: []Series{{Name: "verified"}, {Name: "unverified (SetVerify(false))"}}}
	for _, j := range verifyJobs {
		row := r.add(j.label(), "MB/s", "higher", "verified", got[key("verified", j.label())], "unverified (SetVerify(false))", got[key("unverified", j.label())])
		r.highlight("%s: verified %s MB/s vs unverified %s MB/s (ratio %s)", j.label(), fmtNum(row.Basefs.Median), fmtNum(row.Baseline.Median), fmtNum(*row.Ratio))
		f.Labels = append(f.Labels, j.Name)
		f.Series[0].Points = append(f.Series[0].Points, row.Basefs)
		f.Series[1].Points = append(f.Series[1].Points, *row.Baseline)
	}
	r.Figures = append(r.Figures, f)
	return nil
}
