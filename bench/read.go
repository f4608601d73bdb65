package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/daemon/control"
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

// The read scenario's targets: the same bytes read three ways.
const (
	tBasefs   = "basefs"
	tLoopback = "go-fuse loopback"
	tPlain    = "plain file"
)

var readTargets = []string{tBasefs, tLoopback, tPlain}

// runRead: warm reads through the basefs daemon vs go-fuse's loopback over the same bytes in
// a plain file, read through the page cache (FUSE alone) vs the plain file.
func runRead(ctx context.Context, e *env, r *Result) error {
	if err := needFUSE(); err != nil {
		return err
	}
	if err := needTools("fio", "dd"); err != nil {
		return err
	}
	o := e.opts
	r.Measures = "fio (one job, time-based; psync at queue depth 1, and libaio at queue depth 16 for random O_DIRECT " +
		"reads, as qemu issues them) reads one data-dense image three ways, alternating run by run: through a " +
		"`basefs mount` daemon whose local state holds every chunk (warm; every byte verified against its chunk " +
		"digest, from the daemon's memory cache or from the local chunk objects by sub-block); through go-fuse's " +
		"loopback file system over the same bytes in a plain raw file, served by its own process " +
		"(`basefs-bench serve-loopback`) with basefs's mount options, without passthrough (every read crosses FUSE " +
		"to that process) and opening the plain file without O_DIRECT (its reads come from the host's page cache, " +
		"as basefs's chunk objects do) — what FUSE alone costs; and from that plain file directly (with O_DIRECT " +
		"that reads the disk, buffered the page cache). Patterns: sequential 1 MiB, random 4 KiB and random 64 KiB, " +
		"each with O_DIRECT and buffered, and random 4 KiB and 64 KiB at QD16 with O_DIRECT. Everything is warm: " +
		"before the runs each path is read once with O_DIRECT and once buffered, and fio does not drop page caches " +
		"(invalidate=0). Buffered reads of basefs come from the kernel's page cache (basefs keeps it across opens " +
		"of its immutable images); go-fuse's loopback drops it at each open, so its buffered reads cross FUSE. " +
		"Ratios are basefs ÷ baseline; the per-run table pairs the samples of one run, where the three alternated."
	r.set("image", "%s of pseudo-random data (no holes), %s chunks", sizeText(o.ReadSize), sizeText(chunkstore.DefaultChunkSize))
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
	raw, state := filepath.Join(plainDir, "image.raw"), filepath.Join(dir, "state")
	imp, err := e.denseImage(ctx, raw, state, 101)
	if err != nil {
		return err
	}
	d, err := e.startDaemon(ctx, state, filepath.Join(dir, "mnt"), nil)
	if err != nil {
		return err
	}
	cl.add(d.Stop)
	st, err := d.Status(ctx)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	l, err := startLoopback(ctx, self, plainDir, filepath.Join(dir, "loop"))
	if err != nil {
		return err
	}
	cl.add(l.Stop)
	m := &readMeter{
		daemon: d, supervisorPID: d.PID(), serverPID: st.PID, loop: l, runtime: o.FioRuntime,
		paths: map[string]string{tBasefs: filepath.Join(d.Mount, imp.Digest), tLoopback: filepath.Join(l.mnt, "image.raw"), tPlain: raw},
		got:   series{}, cpu: series{}, served: map[string]int64{}, asked: map[string]int64{},
	}
	bm, berr := mountOptionsOf(d.Mount)
	lm, lerr := mountOptionsOf(l.mnt)
	if err := errJoin(berr, lerr); err != nil {
		return err
	}
	r.set("mount options", "basefs `%s`; go-fuse loopback `%s`", bm, lm)
	if bm != lm {
		r.note("The loopback's mount options differ from basefs's (see the settings): its baseline is not like for like.")
	}
	if o.ProfileDir != "" {
		if m.prof, err = newCPUProfiler(o.ProfileDir, control.NewClient(control.SocketFromState(d.State))); err != nil {
			return err
		}
		r.set("profile", "the serving process's CPU profile during every basefs run, into %s (pprof samples at 100 Hz; basefs's figures include that cost)", o.ProfileDir)
	}

	// Warm: every chunk read (and verified whole) once, the page caches filled.
	e.logf("warming: reading the image once through each path, with O_DIRECT and buffered")
	for _, t := range readTargets {
		for _, direct := range []bool{true, false} {
			if _, err := ddRead(ctx, m.paths[t], 0, 0, direct); err != nil {
				return err
			}
		}
	}
	for run := range o.Runs {
		for ji, j := range readJobs {
			for k := range readTargets {
				t := readTargets[(k+run+ji)%len(readTargets)]
				mbs, err := m.measure(ctx, t, j)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", t, j.label(), err)
				}
				e.logf("run %d/%d %-28s %-17s %8.1f MB/s", run+1, o.Runs, j.label(), t, mbs)
			}
		}
	}
	if st, err = d.Status(ctx); err != nil {
		return err
	}
	if st.Stats.ReadErrors != 0 || st.Stats.LocalCorrupt != 0 || st.Stats.Fetches() != 0 {
		return fmt.Errorf("daemon: %d read errors, %d corrupt chunks, %d fetches (want none)", st.Stats.ReadErrors, st.Stats.LocalCorrupt, st.Stats.Fetches())
	}
	r.note("The daemon served %d reads (%d memory-cache hits, %d sub-block reads) with no read error and no corrupt chunk.",
		st.Stats.Reads, st.Stats.MemoryHits, st.Stats.SubBlockReads)
	if err := m.report(ctx, e, r); err != nil {
		return err
	}
	for _, row := range r.Rows {
		if row.Ratio != nil {
			e.logf("%-50s ÷ %-17s %s (median of runs %s)", row.Metric, row.BaselineName, fmtNum(*row.Ratio), fmtNum(Summarize(row.RunRatios).Median))
		}
	}
	return nil
}

// readMeter measures the read scenario's fio runs and keeps their samples.
type readMeter struct {
	daemon        *daemon
	supervisorPID int // basefs's supervisor: it holds the FUSE connection (and relays it on kernels without resend)
	serverPID     int // basefs's serving process
	loop          *loopback
	paths         map[string]string // by target
	runtime       time.Duration
	prof          *cpuProfiler  // nil: no profile
	serverCPU     time.Duration // the serving process's CPU during all basefs runs

	got    series           // MB/s by target and pattern, in run order
	cpu    series           // CPU µs per read by target and pattern (O_DIRECT, FUSE servers)
	served map[string]int64 // bytes the FUSE server served, by target and pattern
	asked  map[string]int64 // bytes fio read, by target and pattern
}

// measure runs pattern j on target t once and returns its throughput.
func (m *readMeter) measure(ctx context.Context, t string, j fioJob) (float64, error) {
	var pids []int
	switch t {
	case tBasefs:
		pids = []int{m.serverPID, m.supervisorPID}
	case tLoopback:
		pids = []int{m.loop.PID()}
	}
	served0, err := m.servedBytes(ctx, t)
	if err != nil {
		return 0, err
	}
	cpu0, err := processCPUs(pids)
	if err != nil {
		return 0, err
	}
	var res fioResult
	read := func() (err error) {
		res, err = fio(ctx, m.paths[t], j, m.runtime)
		return err
	}
	if t == tBasefs {
		err = m.prof.during(ctx, j.label(), m.runtime, read)
	} else {
		err = read()
	}
	if err != nil {
		return 0, err
	}
	cpu1, err := processCPUs(pids)
	if err != nil {
		return 0, err
	}
	served1, err := m.servedBytes(ctx, t)
	if err != nil {
		return 0, err
	}
	k := key(t, j.label())
	m.got.add(k, res.MBs)
	m.served[k] += served1 - served0
	m.asked[k] += res.Bytes
	var used time.Duration
	for i := range pids {
		used += cpu1[i] - cpu0[i]
	}
	if pids != nil && j.Direct && res.IOs > 0 {
		m.cpu.add(k, float64(used)/float64(time.Microsecond)/float64(res.IOs))
	}
	if t == tBasefs {
		m.serverCPU += cpu1[0] - cpu0[0]
	}
	if t == tLoopback && j.Direct && served1-served0 < res.Bytes {
		return 0, fmt.Errorf("the loopback server read %d bytes for the %d fio read with O_DIRECT: reads did not cross FUSE (passthrough?)", served1-served0, res.Bytes)
	}
	return res.MBs, nil
}

// servedBytes is the bytes target t's FUSE server has served so far (the daemon's count, the
// loopback server's reads); 0 for the plain file.
func (m *readMeter) servedBytes(ctx context.Context, t string) (int64, error) {
	switch t {
	case tBasefs:
		st, err := m.daemon.Status(ctx)
		if err != nil {
			return 0, err
		}
		return st.Stats.BytesRead, nil
	case tLoopback:
		return processReadBytes(m.loop.PID())
	}
	return 0, nil
}

// report adds the rows, key figures, notes, figures and profiles of what m measured.
func (m *readMeter) report(ctx context.Context, e *env, r *Result) error {
	for _, j := range readJobs {
		if j.Direct {
			continue
		}
		for _, t := range []string{tBasefs, tLoopback} {
			k := key(t, j.label())
			how := "the daemon's count of bytes served"
			if t == tLoopback {
				how = "the server process's read bytes (rchar), its FUSE request headers included"
			}
			r.note("%s through %s: its FUSE server read %.1f%% of the %s MB fio read (%s; what it did not read came from the kernel's page cache, more than 100%% is readahead).",
				j.label(), t, 100*float64(m.served[k])/float64(m.asked[k]), fmtNum(float64(m.asked[k])/1e6), how)
		}
	}
	r.note("CPU per read is the user and system time of the FUSE server's processes during the run ÷ fio's reads " +
		"(with O_DIRECT each read is one FUSE request): for basefs the serving process and the supervisor holding " +
		"the connection (it relays it only on kernels without resend), for the loopback its one process; from /proc/PID/stat, 10 ms resolution.")
	for _, base := range readTargets[1:] {
		for _, j := range readJobs {
			r.addPaired(j.label(), "MB/s", "higher", "basefs (warm, verified)", m.got[key(tBasefs, j.label())], base, m.got[key(base, j.label())])
		}
	}
	for _, j := range readJobs {
		if j.Direct {
			r.addPaired(j.label()+": CPU per read", "µs", "lower", "basefs (serving process + supervisor)", m.cpu[key(tBasefs, j.label())], tLoopback, m.cpu[key(tLoopback, j.label())])
		}
	}
	for _, j := range readJobs {
		if j.Direct || j.Name == "seq 1 MiB" {
			b := Summarize(m.got[key(tBasefs, j.label())]).Median
			lo := Summarize(m.got[key(tLoopback, j.label())]).Median
			pl := Summarize(m.got[key(tPlain, j.label())]).Median
			r.highlight("warm %s: basefs %s MB/s, %s go-fuse loopback (%s MB/s), %s the plain file (%s MB/s)",
				j.label(), fmtNum(b), ratioText(b/lo), fmtNum(lo), ratioText(b/pl), fmtNum(pl))
		}
	}
	for _, direct := range []bool{true, false} {
		f := Figure{File: "read-buffered", Title: "Warm buffered reads (fio, psync, QD1)", Kind: "bar", YLabel: "MB/s (median, min–max)"}
		if direct {
			f.File, f.Title = "read-direct", "Warm reads with O_DIRECT (fio: psync QD1, libaio QD16)"
		}
		r.Figures = append(r.Figures, readFigure(f, readTargets, m.got, func(j fioJob) bool { return j.Direct == direct }))
	}
	r.Figures = append(r.Figures, readFigure(Figure{File: "read-cpu", Title: "FUSE server CPU per read, O_DIRECT", Kind: "bar",
		YLabel: "µs per read (median, min–max)"}, readTargets[:2], m.cpu, func(j fioJob) bool { return j.Direct }))

	prof, err := m.prof.finish(ctx, "read")
	if err != nil {
		return fmt.Errorf("CPU profile: %w", err)
	}
	if prof != nil {
		r.note("The serving process's CPU profile of every basefs run is in %s (`go tool pprof -top` in %s; one per pattern beside it). "+
			"Its samples hold %s of CPU where /proc counted %s for the serving process over the same runs: read it for where "+
			"the time goes rather than how much.", prof.Profile, prof.Top, prof.Sampled.Round(time.Millisecond), m.serverCPU.Round(time.Millisecond))
		e.logf("CPU profile of the daemon: %s; top entries: %s", prof.Profile, prof.Top)
	}
	return nil
}

// readFigure fills f with one bar group per pattern that keep selects, one bar per target.
func readFigure(f Figure, targets []string, s series, keep func(fioJob) bool) Figure {
	for _, t := range targets {
		f.Series = append(f.Series, Series{Name: t})
	}
	for _, j := range readJobs {
		if !keep(j) {
			continue
		}
		f.Labels = append(f.Labels, j.short())
		for i, t := range targets {
			f.Series[i].Points = append(f.Series[i].Points, Summarize(s[key(t, j.label())]))
		}
	}
	return f
}
