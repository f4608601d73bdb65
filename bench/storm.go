package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/basefs/basefs/daemon/control"
)

// The storm: N hosts of scripts/fleet.sh (network namespaces on a bridge, each its own daemon)
// replay the real OS image's boot at once — the reads a traced boot to login: made, at their
// times — with the peer tier off and on. --storm-from tier: the image is published to the tier
// (a static server of the published layout on loopback, reached over the bridge through the
// fleet's shaped tier link); Glance is not asked. --storm-from glance: the image is in Glance
// and the tier holds its manifest alone (storm_glance.go).

const (
	stormNet    = "10.78.0" // the bench's fleet: its own /24
	stormPrefix = "bfsb"    // and its own names: host i is the namespace <prefix>h<i> (scripts/fleet.sh)
)

// stormRun is one storm: N hosts, peers on or off.
type stormRun struct {
	n                    int
	peers                bool
	tier, peer, glance   int64 // bytes, summed over the hosts' origins
	times, inReads       []float64
	errors               int
	killedAt             time.Duration
	tierLink, tierLinkRq int64 // the shaper's own count of the tier link
	// manifests the hosts took from the tier and from peers; CPU seconds their daemons used
	// during the replay
	tierManifests, peerManifests int64
	cpu                          float64
	machineBusy                  float64 // the share of the machine's CPU time busy during the replay
}

func runStorm(ctx context.Context, e *env, r *Result) error {
	if err := needFUSE(); err != nil {
		return err
	}
	if err := needLibvirt(ctx); err != nil {
		return err
	}
	for _, c := range []string{"ip", "tc", "nsenter", "fusermount3"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("storm needs %s (scripts/setup-host.sh installs it)", c)
		}
	}
	o := e.opts
	img, err := e.osImage(ctx)
	if err != nil {
		return err
	}
	dirs, err := e.bootDirs("storm")
	if err != nil {
		return err
	}
	localRaw, traceDir, err := e.localOSImage(ctx, "storm", img)
	if err != nil {
		return err
	}
	fi, err := os.Stat(localRaw)
	if err != nil {
		return err
	}
	e.logf("importing and publishing the OS image (%s)", sizeText(fi.Size()))
	imp, err := e.importPublished(ctx, dirs.originState, dirs.pub, localRaw)
	if err != nil {
		return err
	}
	b := realBoot{novaInstances: dirs.novaInst, kernel: img.kernel, initrd: img.initrd, virtType: o.VirtType, diskSize: fi.Size()}
	trace := filepath.Join(traceDir, "blk.trace")
	e.logf("traced local boot (every guest read logged, with its time)")
	tb, err := b.plainBoot(ctx, nil, fmt.Sprintf("basefsbench-storm%d", os.Getpid()), localRaw, "", trace)
	if err != nil {
		return fmt.Errorf("traced boot: %w", err)
	}
	reads, err := readTimedTrace(trace)
	if err != nil {
		return err
	}
	e.logf("boot trace: login %.1f s, %d reads over %.1f s", tb.Login, len(reads), reads[len(reads)-1].At.Seconds())

	r.set("image", "the real OS image (%s), published to the tier at the default chunk size; digest %s", sizeText(fi.Size()), imp.Digest)
	r.set("boot trace", "%d reads, %.1f s from the first to the last (a local traced boot to login: in %.1f s)", len(reads), reads[len(reads)-1].At.Seconds(), tb.Login)
	r.set("tier link", "%s, %s latency (user-space shaper on the bridge)", bandwidthText(o.Bandwidth), o.Latency)
	r.set("hosts", "%v, each a network namespace with its own daemon (scripts/fleet.sh)", o.StormHosts)
	for _, from := range o.StormFrom {
		src := &stormSource{name: "tier", tierDir: dirs.pub, file: imp.Digest, stop: func() {}}
		if from == "glance" {
			if src, err = e.glanceSource(ctx, localRaw); err != nil {
				return err
			}
			r.set("glance", "the same image as a raw Glance image (%s, no Keystone; its link shaped as the tier's); `basefs publish glance://ID` read %s from Glance (%.2f× the image) and the tier holds the manifest alone",
				src.glanceURL, mibText(src.publishRead), float64(src.publishRead)/float64(src.imageSize))
		}
		err := e.stormFrom(ctx, r, src, reads)
		src.stop()
		if err != nil {
			return err
		}
	}
	return nil
}

// stormFrom runs the storms of one source: every fleet size with peers off, then on, and (the
// tier source) one storm at the largest size whose last host is killed at the midpoint.
func (e *env) stormFrom(ctx context.Context, r *Result, src *stormSource, reads []timedRead) error {
	// The tier: a static layout on loopback; the fleet's shaper is its only link.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(src.tierDir)), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	fl, err := newStormFleet(e, "http://"+ln.Addr().String(), src.glanceURL)
	if err != nil {
		return err
	}
	defer fl.down()
	hosts := e.opts.StormHosts
	var runs []stormRun
	for _, peers := range []bool{false, true} {
		for _, n := range hosts {
			run, err := fl.storm(ctx, n, peers, src.file, reads, -1)
			if err != nil {
				return err
			}
			e.logf("storm from %s N=%d peers=%v: slowest %.1f s, tier %s, peers %s, Glance %s, errors %d, daemons' CPU %.1f s, machine %.0f%% busy",
				src.name, n, peers, slices.Max(run.times), mibText(run.tier), mibText(run.peer), mibText(run.glance), run.errors, run.cpu, 100*run.machineBusy)
			runs = append(runs, run)
		}
	}
	lone := runs[0]
	unique := lone.tier // one host alone fetches each chunk it reads once: the unique bytes
	if src.name == "glance" {
		unique = lone.glance
	}
	if unique == 0 {
		return fmt.Errorf("the lone host fetched nothing from the %s: the trace read no data", src.name)
	}
	stormReport(r, src, runs, unique)
	// One peer killed at the midpoint of the largest storm.
	n := hosts[len(hosts)-1]
	if n >= 2 && src.name == "tier" {
		mid := time.Duration(Summarize(lone.times).Median / 2 * float64(time.Second))
		k, err := fl.storm(ctx, n, true, src.file, reads, mid)
		if err != nil {
			return err
		}
		r.add(fmt.Sprintf("read errors on the %d hosts left, host %d killed after %.1f s", n-1, n, mid.Seconds()), "reads", "lower", "peers on", []float64{float64(k.errors)}, "", nil)
		r.highlight("host %d of %d killed at the storm's midpoint (%.1f s): %d read errors on the others; the tier served %.2f× the unique bytes",
			n, n, mid.Seconds(), k.errors, float64(k.tier)/float64(unique))
	}
	return nil
}

// stormReport adds the rows, highlights and plots of one source's storms.
func stormReport(r *Result, src *stormSource, runs []stormRun, unique int64) {
	lone := Summarize(runs[0].times).Max
	loneReads := Summarize(runs[0].inReads).Max
	label, file, bytesFile, what := "", "storm", "storm-tier", "the tier"
	if src.name == "glance" {
		label, file, bytesFile, what = "from Glance, ", "storm-glance", "storm-glance-bytes", "Glance"
	}
	main := func(s stormRun) int64 { // the bytes the plot shows: from the image's source
		if src.name == "glance" {
			return s.glance
		}
		return s.tier
	}
	var labels []string
	fig := Figure{File: bytesFile, Title: "Bytes from " + what + " ÷ unique bytes read", XLabel: "hosts", YLabel: "× unique bytes", Kind: "line"}
	tfig := Figure{File: file + "-time", Title: "Slowest host's boot trace ÷ a lone host's", XLabel: "hosts", YLabel: "× lone host", Kind: "line"}
	by := map[bool][]stormRun{}
	for _, s := range runs {
		by[s.peers] = append(by[s.peers], s)
	}
	for _, s := range by[false] {
		labels = append(labels, fmt.Sprint(s.n))
		fig.X = append(fig.X, float64(s.n))
	}
	fig.Labels, tfig.Labels, tfig.X = labels, labels, fig.X
	u := float64(unique)
	for _, peers := range []bool{false, true} {
		name := map[bool]string{false: "peers off", true: "peers on"}[peers]
		ts, ss := Series{Name: name}, Series{Name: name}
		for _, s := range by[peers] {
			sum := Summarize(s.times)
			ts.Points = append(ts.Points, Summarize([]float64{float64(main(s)) / u}))
			ss.Points = append(ss.Points, Summarize([]float64{sum.Max / lone}))
			row := func(metric, unit string, v float64) {
				r.add(fmt.Sprintf("%sN=%d %s: %s", label, s.n, name, metric), unit, "lower", name, []float64{v}, "", nil)
			}
			row("bytes from the tier ÷ unique", "×", float64(s.tier)/u)
			row("bytes between peers ÷ unique", "×", float64(s.peer)/u)
			row("bytes from Glance ÷ unique", "×", float64(s.glance)/u)
			row("slowest host ÷ lone host", "×", sum.Max/lone)
			row("median host ÷ lone host", "×", sum.Median/lone)
			rs := Summarize(s.inReads)
			row("slowest host's time in reads ÷ lone host's", "×", rs.Max/loneReads)
			row("median host's time in reads ÷ lone host's", "×", rs.Median/loneReads)
			row("read errors", "reads", float64(s.errors))
			row("manifests from the tier", "manifests", float64(s.tierManifests))
			row("manifests from peers", "manifests", float64(s.peerManifests))
			row("CPU seconds of the hosts' daemons during the replay", "s", s.cpu)
			row("those CPU seconds ÷ the machine's CPU seconds in the slowest replay", "×", s.cpu/(sum.Max*float64(runtime.NumCPU())))
			row("the machine's CPU busy during the replay (every process, /proc/stat)", "share", s.machineBusy)
			if peers && s.n == runs[len(runs)-1].n {
				off := by[false][len(by[false])-1]
				other, otherOn, otherOff := "Glance", s.glance, off.glance // the origin that is not the source
				if src.name == "glance" {
					other, otherOn, otherOff = "the tier", s.tier, off.tier
				}
				r.highlight("%sN=%d with peers: %s served %.2f× the unique bytes (peers off: %.2f×), peers moved %.2f×, %s %.2f× (peers off %.2f×); slowest host %.2f× a lone host's boot trace (peers off: %.2f×), its time in reads %.2f× (peers off: %.2f×); the daemons used %.0f CPU s (peers off: %.0f) in a %.0f s replay on %d cores, the machine was %.0f%% busy (peers off: %.0f%%)",
					label, s.n, what, float64(main(s))/u, float64(main(off))/u, float64(s.peer)/u, other, float64(otherOn)/u, float64(otherOff)/u,
					sum.Max/lone, Summarize(off.times).Max/lone, rs.Max/loneReads, Summarize(off.inReads).Max/loneReads,
					s.cpu, off.cpu, sum.Max, runtime.NumCPU(), 100*s.machineBusy, 100*off.machineBusy)
			}
		}
		fig.Series = append(fig.Series, ts)
		tfig.Series = append(tfig.Series, ss)
	}
	r.Figures = append(r.Figures, fig, tfig)
	r.note("%sa host's time is its whole replay (the trace's reads issued at their recorded times: the guest's own pace, %.1f s, bounds it from below); its time in reads is the sum of its reads' latencies, what the guest would have waited on its disk (lone host: %.2f s); CPU seconds: user + system of every process in the hosts' namespaces, from the replay's start to its end", label, lone, loneReads)
	if src.name == "glance" {
		r.note("from Glance: unique bytes are what the lone host (N=1, peers off) took from Glance, %s; the tier holds the manifest alone; `basefs publish glance://ID` read %s from Glance before the storms (%.2f× the %s image): Glance served the image once to publish, then per storm the bytes above",
			mibText(unique), mibText(src.publishRead), float64(src.publishRead)/float64(src.imageSize), sizeText(src.imageSize))
	} else {
		r.note("unique bytes: what the lone host (N=1, peers off) took from the tier, %s; Glance is not an origin here (the image is published to the tier)", mibText(unique))
	}
}

// stormFleet runs scripts/fleet.sh for the bench.
type stormFleet struct {
	e      *env
	script string
	env    []string
	dir    string
}

func newStormFleet(e *env, tierURL, glanceURL string) (*stormFleet, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	bin, err := e.dir("storm", "bin")
	if err != nil {
		return nil, err
	}
	for _, p := range []string{e.basefs, self} {
		link := filepath.Join(bin, filepath.Base(p))
		os.Remove(link)
		if err := os.Symlink(p, link); err != nil {
			return nil, err
		}
	}
	dir, err := e.dir("storm", "fleet")
	if err != nil {
		return nil, err
	}
	o := e.opts
	return &stormFleet{e: e, script: filepath.Join(root, "scripts", "fleet.sh"), dir: dir,
		env: append(os.Environ(), "BASEFS_FLEET_DIR="+dir, "BASEFS_FLEET_BIN="+bin, "BASEFS_FLEET_PREFIX="+stormPrefix,
			"BASEFS_FLEET_NET="+stormNet, "BASEFS_FLEET_TIER_URL="+tierURL, "BASEFS_FLEET_TIER_PORT=7480",
			"BASEFS_FLEET_ORIGIN=http://"+stormNet+".1:7480/",
			fmt.Sprintf("BASEFS_FLEET_TIER_RATE=%.0f", o.Bandwidth), "BASEFS_FLEET_TIER_LATENCY="+o.Latency.String(),
			// Glance (the glance source only) behind a link of the tier's rate
			"BASEFS_FLEET_GLANCE_URL="+glanceURL, fmt.Sprintf("BASEFS_FLEET_GLANCE_RATE=%.0f", o.Bandwidth))}, nil
}

func (f *stormFleet) run(ctx context.Context, extra []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, f.script, args...)
	cmd.Env = append(slices.Clone(f.env), extra...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("fleet.sh %s: %v: %s", strings.Join(args, " "), err, tail(stderr.String(), 5))
	}
	return string(out), nil
}

func (f *stormFleet) down() { f.run(context.Background(), nil, "down") }

// storm brings up n fresh hosts, waits for their membership, replays the trace on every one at
// once and counts; with kill ≥ 0, host n is killed that long after the start and its own
// reads are not counted.
func (f *stormFleet) storm(ctx context.Context, n int, peers bool, digest string, reads []timedRead, kill time.Duration) (stormRun, error) {
	run := stormRun{n: n, peers: peers, killedAt: kill}
	f.down() // every storm starts cold
	p := map[bool]string{false: "0", true: "1"}[peers]
	if _, err := f.run(ctx, []string{"BASEFS_FLEET_PEERS=" + p}, "up", fmt.Sprint(n)); err != nil {
		return run, err
	}
	status := func(i int) (*control.Status, error) {
		var st control.Status
		out, err := command(ctx, f.e.basefs, "status", "--state", filepath.Join(f.dir, fmt.Sprintf("h%d", i), "state"), "--json")
		if err != nil {
			return nil, err
		}
		return &st, json.Unmarshal(out, &st)
	}
	deadline := time.Now().Add(60 * time.Second)
	for i := 1; i <= n; i++ {
		for {
			st, err := status(i)
			if err == nil && (!peers || st.Peers != nil && st.Peers.Members == n) {
				break
			}
			if time.Now().After(deadline) {
				return run, fmt.Errorf("storm N=%d: host %d not ready (status %v)", n, i, err)
			}
			time.Sleep(200 * time.Millisecond) // gossip and start-up have no signal to wait on
		}
	}
	cpu := func() (sum float64) {
		for i := 1; i <= n; i++ {
			c, err := nsCPU(ctx, fmt.Sprintf("%sh%d", stormPrefix, i))
			if err == nil {
				sum += c
			}
		}
		return sum
	}
	cpuBefore := cpu()
	busy0, total0, _ := machineCPU()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		wg.Go(func() {
			rp, err := replay(ctx, filepath.Join(f.dir, fmt.Sprintf("h%d", i), "mnt", digest), reads)
			if kill >= 0 && i == n {
				return // the killed host
			}
			mu.Lock()
			defer mu.Unlock()
			run.times = append(run.times, rp.Took.Seconds())
			run.inReads = append(run.inReads, rp.InReads.Seconds())
			run.errors += rp.Failed
			if err != nil && rp.Failed == 0 {
				run.errors++
			}
			if err != nil {
				f.e.logf("storm N=%d peers=%v: host %d: %d reads failed: %v", n, peers, i, rp.Failed, err)
			}
		})
	}
	if kill >= 0 {
		time.Sleep(kill)
		if _, err := f.run(ctx, nil, "kill", fmt.Sprint(n)); err != nil {
			return run, err
		}
	}
	wg.Wait()
	run.cpu = cpu() - cpuBefore
	if busy1, total1, err := machineCPU(); err == nil && total1 > total0 {
		run.machineBusy = (busy1 - busy0) / (total1 - total0)
	}
	last := n
	if kill >= 0 {
		last = n - 1
	}
	for i := 1; i <= last; i++ {
		st, err := status(i)
		if err != nil {
			return run, fmt.Errorf("storm N=%d: host %d's status: %w", n, i, err)
		}
		for _, o := range st.Stats.Origins {
			switch {
			case strings.HasPrefix(o.Origin, "peers("):
				run.peer += o.Bytes
				run.peerManifests += o.Manifests
			case strings.HasPrefix(o.Origin, "glance"):
				run.glance += o.Bytes
			default:
				run.tier += o.Bytes
				run.tierManifests += o.Manifests
			}
		}
	}
	return run, nil
}
