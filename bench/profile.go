package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/basefs/basefs/daemon/control"
)

// cpuProfiler records the basefs serving process's CPU profile (the control socket's
// /debug/pprof/profile) while each of the daemon's measured runs runs, and at the end
// writes one profile per pattern and one of all of them, each with its `go tool pprof -top`.
// A nil *cpuProfiler records nothing.
type cpuProfiler struct {
	dir    string
	client *control.Client
	runs   map[string][]string // the recorded profiles, by the name of what they profile
	names  []string            // in the order first recorded
}

func newCPUProfiler(dir string, client *control.Client) (*cpuProfiler, error) {
	if err := needTools("go"); err != nil {
		return nil, fmt.Errorf("--profile: `go tool pprof` merges and summarises the profiles: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "runs"), 0o755); err != nil {
		return nil, fmt.Errorf("--profile: %w", err)
	}
	return &cpuProfiler{dir: dir, client: client, runs: map[string][]string{}}, nil
}

// during runs fn, which takes about d, while the daemon's CPU profile of d is recorded as one
// run of name.
func (p *cpuProfiler) during(ctx context.Context, name string, d time.Duration, fn func() error) error {
	if p == nil {
		return fn()
	}
	path := filepath.Join(p.dir, "runs", fmt.Sprintf("%s.%d.pprof", slug(name), len(p.runs[name])+1))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	recorded := make(chan error, 1)
	go func() { recorded <- p.client.CPUProfile(ctx, d, f) }()
	ferr := fn()
	perr := <-recorded
	if cerr := f.Close(); perr == nil {
		perr = cerr
	}
	if ferr != nil {
		return ferr
	}
	if perr != nil {
		return perr
	}
	if _, ok := p.runs[name]; !ok {
		p.names = append(p.names, name)
	}
	p.runs[name] = append(p.runs[name], path)
	return nil
}

// profileSummary names the merged profile of all runs, its top entries, and the CPU time
// its samples hold (0 if pprof's text did not say).
type profileSummary struct {
	Profile, Top string
	Sampled      time.Duration
}

// finish merges the recorded runs into prefix-<name>.pprof and prefix-all.pprof and writes
// `go tool pprof -top` of each beside it (.top.txt). It returns the merge of all patterns;
// nothing when no run was recorded.
func (p *cpuProfiler) finish(ctx context.Context, prefix string) (*profileSummary, error) {
	if p == nil || len(p.names) == 0 {
		return nil, nil
	}
	var all []string
	for _, n := range p.names {
		if _, err := p.merge(ctx, prefix+"-"+slug(n), p.runs[n]); err != nil {
			return nil, err
		}
		all = append(all, p.runs[n]...)
	}
	return p.merge(ctx, prefix+"-all", all)
}

// totalSamples finds the sampled CPU time in `go tool pprof -top`'s header.
var totalSamples = regexp.MustCompile(`Total samples = ([0-9.]+(?:ns|us|µs|ms|s))\b`)

// merge writes the profiles merged as dir/base.pprof and their top entries as
// dir/base.top.txt.
func (p *cpuProfiler) merge(ctx context.Context, base string, runs []string) (*profileSummary, error) {
	s := &profileSummary{Profile: filepath.Join(p.dir, base+".pprof"), Top: filepath.Join(p.dir, base+".top.txt")}
	if _, err := command(ctx, "go", append([]string{"tool", "pprof", "-proto", "-output", s.Profile}, runs...)...); err != nil {
		return nil, err
	}
	out, err := command(ctx, "go", "tool", "pprof", "-top", s.Profile)
	if err != nil {
		return nil, err
	}
	if m := totalSamples.FindSubmatch(out); m != nil {
		s.Sampled, _ = time.ParseDuration(string(m[1]))
	}
	return s, os.WriteFile(s.Top, out, 0o644)
}

// slug is name as a file name: "rand 4 KiB QD16, O_DIRECT" → "rand-4-kib-qd16-o_direct".
func slug(name string) string {
	return strings.ToLower(strings.Join(strings.FieldsFunc(name, func(r rune) bool { return r == ' ' || r == ',' || r == '/' }), "-"))
}

// userHZ is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on Linux).
const userHZ = 100

// processCPUs returns the CPU time (user and system, every thread) each process has used.
func processCPUs(pids []int) ([]time.Duration, error) {
	out := make([]time.Duration, len(pids))
	for i, pid := range pids {
		var err error
		if out[i], err = processCPU(pid); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// processCPU returns the CPU time (user and system, every thread) a process has used.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count the fields after its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, tail(string(b), 200))
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, tail(string(b), 200))
	}
	var ticks int64
	for _, s := range f[11:13] { // utime, stime: fields 14 and 15
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// processReadBytes returns the bytes a process has read with read(2) and its kin
// (/proc/PID/io rchar; for a FUSE server this includes the requests it reads from
// /dev/fuse, 80 bytes a read request).
func processReadBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "rchar: "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/io: no rchar", pid)
}
