package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/basefs/basefs/chunkstore"
)

// Sizes.
const (
	KiB = int64(1) << 10
	MiB = int64(1) << 20
	GiB = int64(1) << 30
)

// Options configure a run. Zero values take the defaults (Defaults), which depend on Quick.
type Options struct {
	Scenarios []string // in any order; empty: all. Run runs them in the canonical order.
	Out       string   // the output directory
	Runs      int      // runs per measurement (default 3; 1 with Quick)
	Quick     bool     // the short pass: fewer runs, smaller images, shorter fio runs

	BinDir   string // where basefs and basefs-agent are
	GuestDir string // the test guest (vmlinuz, initrd.gz); built with scripts/build-test-guest.sh when empty
	WorkDir  string // scratch space (default a new directory under the system's temp dir)
	Keep     bool   // keep WorkDir afterwards
	VirtType string // libvirt domain type for boots (default $BASEFS_VIRT_TYPE, else qemu)

	Bandwidth float64       // the shaped origin link, bits per second (default 1e9)
	Latency   time.Duration // added before each origin response (default 1 ms)

	BootSizes  []int64       // cold-boot image sizes (default 1, 4, 16 GiB; Quick: 1 GiB)
	GuestRead  int64         // bytes the test guest reads and hashes (default 16 MiB)
	ReadSize   int64         // read and verify-cost image (default 1 GiB; Quick: 512 MiB)
	FioRuntime time.Duration // each fio job (default 4 s; Quick: 2 s)
	ColdSize   int64         // concurrent-cold image (default 1 GiB; Quick: 512 MiB)
	Readers    int           // concurrent-cold readers (default 8)
	ScaleSizes []int64       // scale image sizes (default 1, 4, 16 GiB)
	DedupSize  int64         // dedup image (default 1 GiB; Quick: 256 MiB)

	OSImageDir    string        // real-boot: the built OS image (default: scripts/build-os-image.sh into <repo>/.cache/os-image)
	RealLinks     []Link        // real-boot: the shaped links (default DefaultRealLinks)
	ProfileWindow time.Duration // real-boot: the previous host's --profile-window (default 30 s, the daemon's)
	// RealChunkSizes: real-boot imports the image at each and boots the basefs ways at each, the
	// first compared with the others (default: chunkstore.DefaultChunkSize alone).
	RealChunkSizes []int64
	// StormHosts: the storm's fleet sizes (default 1, 2, 4, 8, 16; Quick: 1, 2, 4).
	StormHosts []int
	// StormFrom: where the storm's image comes from, in order: "tier" (published to the tier)
	// and/or "glance" (a Glance image whose manifest alone is in the tier; default: tier).
	StormFrom []string

	// ProfileDir, when set, receives the basefs daemon's CPU profile while the read
	// scenario's patterns run (read-<pattern>.pprof and read-all.pprof, each with `go tool
	// pprof -top` beside it as .top.txt, and every run's own in runs/); empty: no profile.
	ProfileDir string

	Progress io.Writer // progress lines (default os.Stderr)
}

// Defaults fills in the zero values.
func (o *Options) Defaults() {
	pick := func(full, quick int64) int64 {
		if o.Quick {
			return quick
		}
		return full
	}
	if o.Runs <= 0 {
		o.Runs = int(pick(3, 1))
	}
	if o.Out == "" {
		o.Out = "bench-out"
	}
	if o.VirtType == "" {
		o.VirtType = os.Getenv("BASEFS_VIRT_TYPE")
	}
	if o.VirtType == "" {
		o.VirtType = "qemu"
	}
	if o.Bandwidth <= 0 {
		o.Bandwidth = 1e9
	}
	if o.Latency == 0 {
		o.Latency = time.Millisecond
	}
	if len(o.BootSizes) == 0 {
		if o.Quick {
			o.BootSizes = []int64{1 * GiB}
		} else {
			o.BootSizes = []int64{1 * GiB, 4 * GiB, 16 * GiB}
		}
	}
	if o.GuestRead <= 0 {
		o.GuestRead = 16 * MiB
	}
	if o.ReadSize <= 0 {
		o.ReadSize = pick(1*GiB, 512*MiB)
	}
	if o.FioRuntime <= 0 {
		o.FioRuntime = time.Duration(pick(4, 2)) * time.Second
	}
	if o.ColdSize <= 0 {
		o.ColdSize = pick(1*GiB, 512*MiB)
	}
	if o.Readers <= 0 {
		o.Readers = 8
	}
	if len(o.ScaleSizes) == 0 {
		o.ScaleSizes = []int64{1 * GiB, 4 * GiB, 16 * GiB}
	}
	if o.DedupSize <= 0 {
		o.DedupSize = pick(1*GiB, 256*MiB)
	}
	if len(o.RealLinks) == 0 {
		o.RealLinks = slices.Clone(DefaultRealLinks)
	}
	if len(o.RealChunkSizes) == 0 {
		o.RealChunkSizes = []int64{chunkstore.DefaultChunkSize}
	}
	if len(o.StormHosts) == 0 {
		o.StormHosts = []int{1, 2, 4, 8, 16}
		if o.Quick {
			o.StormHosts = []int{1, 2, 4}
		}
	}
	if len(o.StormFrom) == 0 {
		o.StormFrom = []string{"tier"}
	}
	if o.ProfileWindow <= 0 {
		o.ProfileWindow = 30 * time.Second
	}
	if o.Progress == nil {
		o.Progress = os.Stderr
	}
}

// scenario is one benchmark.
type scenario struct {
	name  string
	title string
	run   func(ctx context.Context, e *env, r *Result) error
}

// scenarios in their canonical order (the order of the report).
var scenarios = []scenario{
	{"read", "Warm reads: basefs vs go-fuse loopback vs the plain file", runRead},
	{"verify-cost", "The cost of read-time verification", runVerifyCost},
	{"cold-boot", "Cold boot: basefs lazy vs nova's eager _base vs a local base", runColdBoot},
	{"real-boot", "A real OS to its login prompt: basefs lazy, with a boot profile, warm vs nova's eager _base vs a local raw file", runRealBoot},
	{"concurrent-cold", "Concurrent readers of one cold image", runConcurrentCold},
	{"scale", "Daemon memory and throughput against image size", runScale},
	{"dedup", "Deduplication of similar images", runDedup},
	{"storm", "A boot storm: N hosts (network namespaces) replay a real boot at once, peers off and on", runStorm},
}

// Scenarios returns the scenario names in their canonical order.
func Scenarios() []string {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	return names
}

// env is one invocation's world, shared by its scenarios.
type env struct {
	opts   Options
	work   string // scratch, 0755 (qemu runs as another user)
	out    string
	basefs string // binaries
	agent  string
	start  time.Time
	cur    string // the running scenario
}

// Run runs the chosen scenarios in the canonical order and writes results.json, report.md
// and the plots to opts.Out. A failed scenario is reported and the others still run; the
// error then names it. The report is written whatever happened. The read scenario runs the
// executable that calls Run again as its loopback baseline's server (LoopbackCommand): that
// program must hand such an invocation to ServeLoopback.
func Run(ctx context.Context, opts Options, command []string) (*Report, error) {
	opts.Defaults()
	for _, n := range opts.Scenarios {
		if !slices.Contains(Scenarios(), n) {
			return nil, fmt.Errorf("unknown scenario %q; the scenarios are %s", n, strings.Join(Scenarios(), ", "))
		}
	}
	e := &env{opts: opts, out: opts.Out, start: time.Now()}
	var err error
	if e.basefs, err = findBinary(opts.BinDir, "basefs"); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	if opts.WorkDir == "" {
		if e.work, err = os.MkdirTemp("", "basefs-bench-"); err != nil {
			return nil, err
		}
	} else {
		e.work = opts.WorkDir
		if err := os.MkdirAll(e.work, 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(e.work, 0o755); err != nil {
		return nil, err
	}
	if !opts.Keep {
		defer os.RemoveAll(e.work)
	}

	rep := &Report{Started: e.start, Machine: describeMachine(ctx), Command: command, Runs: opts.Runs, Quick: opts.Quick}
	var failed []string
	for _, s := range scenarios {
		if len(opts.Scenarios) > 0 && !slices.Contains(opts.Scenarios, s.name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		e.cur = s.name
		r := &Result{Name: s.name, Title: s.title}
		r.Load[0] = loadAverage()
		e.logf("start (load average %s)", r.Load[0])
		t0 := time.Now()
		err := s.run(ctx, e, r)
		r.Seconds = time.Since(t0).Seconds()
		r.Load[1] = loadAverage()
		if err != nil {
			r.Error = err.Error()
			failed = append(failed, s.name)
			e.logf("FAILED after %.0f s: %v", r.Seconds, err)
		} else {
			e.logf("done in %.0f s", r.Seconds)
		}
		rep.Results = append(rep.Results, r)
		// Write after every scenario, so an interrupted run leaves what it measured.
		rep.Finished = time.Now()
		if werr := writeReport(rep, opts.Out); werr != nil {
			return rep, werr
		}
	}
	e.cur = ""
	e.logf("report: %s", filepath.Join(opts.Out, "report.md"))
	switch {
	case ctx.Err() != nil:
		return rep, ctx.Err()
	case len(failed) > 0:
		return rep, fmt.Errorf("scenarios failed: %s (their errors are in the report)", strings.Join(failed, ", "))
	}
	return rep, nil
}

// findBinary returns dir/name, or when dir is empty the name next to this executable, or on
// PATH.
func findBinary(dir, name string) (string, error) {
	if dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w (build it: make build)", p, err)
		}
		return p, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found next to basefs-bench nor on PATH (make build, or --bin DIR)", name)
	}
	return p, nil
}

// logf prints a progress line to stderr: elapsed time, scenario, message.
func (e *env) logf(format string, a ...any) {
	el := time.Since(e.start).Round(time.Second)
	scen := e.cur
	if scen == "" {
		scen = "bench"
	}
	fmt.Fprintf(e.opts.Progress, "[%6s] %-15s %s\n", el, scen, fmt.Sprintf(format, a...))
}

// dir makes a directory under the work directory (and its parents), mode 0755.
func (e *env) dir(parts ...string) (string, error) {
	p := filepath.Join(append([]string{e.work}, parts...)...)
	if err := os.MkdirAll(p, 0o755); err != nil {
		return "", err
	}
	for q := p; q != e.work && strings.HasPrefix(q, e.work); q = filepath.Dir(q) {
		os.Chmod(q, 0o755)
	}
	return p, nil
}

// command runs a program and returns its standard output; an error carries the tail of its
// standard error.
func command(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, tail(stderr.String(), 800))
	}
	return stdout.Bytes(), nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// cleanups runs deferred clean-up steps in reverse order, on success and failure alike.
type cleanups []func()

func (c *cleanups) add(f func()) { *c = append(*c, f) }

func (c *cleanups) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}

// ratioText formats a ratio for prose: "2.4×".
func ratioText(r float64) string { return fmtNum(r) + "×" }

// loadAverage returns the 1, 5 and 15 minute load averages from /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// errJoin joins errors, ignoring nils.
func errJoin(errs ...error) error { return errors.Join(errs...) }
