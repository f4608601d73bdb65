package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/chunkstore/local"
	"github.com/basefs/basefs/fs"
)

// needTools fails unless each program is on PATH.
func needTools(names ...string) error {
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			return fmt.Errorf("%s is not installed (scripts/setup-host.sh installs what the benchmarks need)", n)
		}
	}
	return nil
}

func needFUSE() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (FUSE mounts with allow_other)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("/dev/fuse is missing")
	}
	return needTools("fusermount3")
}

// mountLoopback mounts go-fuse's loopback file system (no passthrough) over dir at mnt, in
// this process, with basefs's mount options less default_permissions (as
// fs/read_bench_test.go does): the cost of FUSE alone, without basefs's read path.
func mountLoopback(dir, mnt string) (*fuse.Server, error) {
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return nil, err
	}
	root, err := gofs.NewLoopbackRoot(dir)
	if err != nil {
		return nil, err
	}
	mo := fs.MountOptions(false)
	mo.Options = []string{"ro"}
	mo.FsName, mo.Name = "loopback", "loopback"
	srv, err := gofs.Mount(mnt, root, &gofs.Options{MountOptions: *mo})
	if err != nil {
		return nil, fmt.Errorf("go-fuse loopback mount at %s: %w", mnt, err)
	}
	return srv, nil
}

// runRead: warm reads through the basefs daemon vs go-fuse's loopback over the same bytes in
// a plain file vs the plain file.
func runRead(ctx context.Context, e *env, r *Result) error {
	if err := needFUSE(); err != nil {
		return err
	}
	if err := needTools("fio", "dd"); err != nil {
		return err
	}
	o := e.opts
	r.Measures = "fio (psync, queue depth 1, one job, time-based) reads one data-dense image three ways, " +
		"alternating run by run: through a `basefs mount` daemon whose local state holds every chunk " +
		"(warm; every byte verified against its chunk digest, from the daemon's memory cache or from the " +
		"local chunk objects by 64 KiB sub-block); through go-fuse's loopback file system without " +
		"passthrough (mounted in-process with basefs's mount options less default_permissions) over the " +
		"same bytes in a plain raw file; and from that plain file directly. Patterns: sequential 1 MiB, " +
		"random 4 KiB and random 64 KiB, each with O_DIRECT and buffered. Everything is warm: before the runs " +
		"each path is read once with O_DIRECT and once buffered, and fio does not drop page caches " +
		"(invalidate=0). So buffered reads of basefs come from the kernel's page cache (basefs keeps it across " +
		"opens of its immutable images), go-fuse's loopback drops it at each open (its reads cross FUSE to the " +
		"page-cached plain file), and the plain file reads from the page cache. With O_DIRECT the loopback " +
		"opens the plain file with O_DIRECT too (it and the plain file then read the disk device), while basefs " +
		"serves its chunk objects through the host's page cache — each as it really behaves."
	r.set("image", "%s of pseudo-random data (no holes), 1 MiB chunks", sizeText(o.ReadSize))
	r.set("fio run", "%s per pattern and target", o.FioRuntime)
	r.set("runs", "%d, target order rotated each run and pattern", o.Runs)
	r.set("daemon", "`basefs mount` defaults (memory cache 256 MiB), no origin, background fill and scrub off")

	var cl cleanups
	defer cl.run()
	dir, err := e.dir("read")
	if err != nil {
		return err
	}
	plainDir, err := e.dir("read", "plain")
	if err != nil {
		return err
	}
	raw := filepath.Join(plainDir, "image.raw")
	e.logf("writing a %s image", sizeText(o.ReadSize))
	if err := writeImage(raw, o.ReadSize, 101, []extent{{0, o.ReadSize}}); err != nil {
		return err
	}
	state := filepath.Join(dir, "state")
	imp, err := e.importImage(ctx, state, raw)
	if err != nil {
		return err
	}
	d, err := e.startDaemon(ctx, state, filepath.Join(dir, "mnt"), nil)
	if err != nil {
		return err
	}
	cl.add(d.Stop)
	img := filepath.Join(d.Mount, imp.Digest)
	lsrv, err := mountLoopback(plainDir, filepath.Join(dir, "loop"))
	if err != nil {
		return err
	}
	cl.add(func() { lsrv.Unmount() })
	loop := filepath.Join(dir, "loop", "image.raw")

	// Warm: every chunk read (and verified whole) once, the page caches filled.
	e.logf("warming: reading the image once through each path, with O_DIRECT and buffered")
	for _, p := range []string{img, loop, raw} {
		for _, direct := range []bool{true, false} {
			if _, err := ddRead(ctx, p, 0, 0, direct); err != nil {
				return err
			}
		}
	}

	targets := []string{"basefs", "go-fuse loopback", "plain file"}
	paths := map[string]string{"basefs": img, "go-fuse loopback": loop, "plain file": raw}
	got := series{}
	served, asked := map[string]int64{}, map[string]int64{} // bytes the daemon served, bytes fio read
	for run := range o.Runs {
		for ji, j := range readJobs {
			for k := range targets {
				t := targets[(k+run+ji)%len(targets)]
				st0, err := d.Status(ctx)
				if err != nil {
					return err
				}
				mbs, n, err := fio(ctx, paths[t], j, o.FioRuntime)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", t, j.label(), err)
				}
				got.add(key(t, j.label()), mbs)
				if t == "basefs" {
					st1, err := d.Status(ctx)
					if err != nil {
						return err
					}
					served[j.label()] += st1.Stats.BytesRead - st0.Stats.BytesRead
					asked[j.label()] += n
				}
				e.logf("run %d/%d %-24s %-17s %8.1f MB/s", run+1, o.Runs, j.label(), t, mbs)
			}
		}
	}
	st, err := d.Status(ctx)
	if err != nil {
		return err
	}
	if st.Stats.ReadErrors != 0 || st.Stats.LocalCorrupt != 0 || st.Stats.Fetches() != 0 {
		return fmt.Errorf("daemon: %d read errors, %d corrupt chunks, %d fetches (want none)", st.Stats.ReadErrors, st.Stats.LocalCorrupt, st.Stats.Fetches())
	}
	r.note("The daemon served %d reads (%d memory-cache hits, %d sub-block reads) with no read error and no corrupt chunk.",
		st.Stats.Reads, st.Stats.MemoryHits, st.Stats.SubBlockReads)
	for _, j := range readJobs {
		if !j.Direct {
			r.note("%s through basefs: the daemon served %.1f%% of the %s MB fio read (the rest came from the kernel's page cache).",
				j.label(), 100*float64(served[j.label()])/float64(asked[j.label()]), fmtNum(float64(asked[j.label()])/1e6))
		}
	}

	for _, base := range targets[1:] {
		for _, j := range readJobs {
			row := r.add(j.label(), "MB/s", "higher", "basefs (warm, verified)", got[key("basefs", j.label())], base, got[key(base, j.label())])
			if base == "go-fuse loopback" && (j.Name == "seq 1 MiB" || j.Name == "rand 4 KiB") {
				r.highlight("warm %s: basefs %s MB/s vs go-fuse loopback %s MB/s (ratio %s; the plain file: %s MB/s)",
					j.label(), fmtNum(row.Basefs.Median), fmtNum(row.Baseline.Median), fmtNum(*row.Ratio),
					fmtNum(Summarize(got[key("plain file", j.label())]).Median))
			}
		}
	}
	for _, direct := range []bool{true, false} {
		f := Figure{Kind: "bar", YLabel: "MB/s (median, min–max)"}
		if direct {
			f.File, f.Title = "read-direct", "Warm reads with O_DIRECT (fio, psync, QD1)"
		} else {
			f.File, f.Title = "read-buffered", "Warm buffered reads (fio, psync, QD1)"
		}
		for _, t := range targets {
			f.Series = append(f.Series, Series{Name: t})
		}
		for _, j := range readJobs {
			if j.Direct != direct {
				continue
			}
			f.Labels = append(f.Labels, j.Name)
			for i, t := range targets {
				f.Series[i].Points = append(f.Series[i].Points, Summarize(got[key(t, j.label())]))
			}
		}
		r.Figures = append(r.Figures, f)
	}
	return nil
}

// verifyJobs are the verify-cost scenario's patterns (O_DIRECT: buffered reads of a warm
// image are served by the page cache, where verification plays no part).
var verifyJobs = []fioJob{
	{"seq 1 MiB", "read", "1m", true},
	{"rand 4 KiB", "randread", "4k", true},
	{"rand 64 KiB", "randread", "64k", true},
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
	raw := filepath.Join(dir, "image.raw")
	e.logf("writing a %s image", sizeText(o.ReadSize))
	if err := writeImage(raw, o.ReadSize, 201, []extent{{0, o.ReadSize}}); err != nil {
		return err
	}
	stateDir := filepath.Join(dir, "state")
	imp, err := e.importImage(ctx, stateDir, raw)
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
				mbs, _, err := fio(ctx, img, j, o.FioRuntime)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", name[v], j.label(), err)
				}
				got.add(key(name[v], j.label()), mbs)
				e.logf("run %d/%d %-24s %-10s %8.1f MB/s", run+1, o.Runs, j.label(), name[v], mbs)
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
