// Command basefs-bench runs basefs's benchmarks against their baselines on this machine and
// writes results.json, report.md and plots to --out. Progress goes to stderr. The exit
// status is 0 when every scenario ran, 1 when one failed (the report says which and why), 2
// when the command line is wrong.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/agent"
	"github.com/basefs/basefs/bench"
	"github.com/basefs/basefs/chunkstore"
)

type options struct {
	out, bin, guest, work, virtType string
	runs                            int
	quick, keep                     bool
	bandwidth                       string
	latency                         time.Duration
	bootSizes, scaleSizes           []string
	guestRead, readSize, coldSize   string
	dedupSize                       string
	fioRuntime                      time.Duration
	readers                         int
	osImage                         string
	realLinks                       []string
	realChunkSizes                  []string
	profileWindow                   time.Duration
	profileDir                      string
	stormHosts                      []int
	stormFrom                       []string
}

func (o *options) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.out, "out", "bench-out", "write results.json, report.md and the plots into `DIR`")
	f.IntVar(&o.runs, "runs", 0, "`N` runs of every measurement, at least 1 (default 3; 1 with --quick)")
	f.BoolVar(&o.quick, "quick", false, "the short pass: 1 run, cold boots of a 1 GiB image only, smaller images, 2 s fio runs")
	f.StringVar(&o.bandwidth, "bandwidth", "1G", "the shaped origin link's bandwidth in `BITS` per second (K, M, G suffixes are powers of 1000)")
	f.DurationVar(&o.latency, "latency", time.Millisecond, "added before each origin response (one round trip)")
	f.StringSliceVar(&o.bootSizes, "sizes", nil, "cold-boot image `SIZES` (default 1G,4G,16G; 1G with --quick)")
	f.StringVar(&o.bin, "bin", "", "`DIR` holding basefs and basefs-agent (default: next to basefs-bench, else PATH)")
	f.StringVar(&o.guest, "guest", "", "`DIR` holding the test guest's vmlinuz and initrd.gz (default: built by scripts/build-test-guest.sh)")
	f.StringVar(&o.work, "work", "", "scratch `DIR` (default: a new temporary directory, removed afterwards)")
	f.BoolVar(&o.keep, "keep", false, "keep the scratch directory")
	f.StringVar(&o.virtType, "virt-type", "", "libvirt domain `TYPE` for boots (default $BASEFS_VIRT_TYPE, else qemu)")
	f.StringVar(&o.osImage, "os-image", "", "real-boot: `DIR` holding the built OS image (default: built by scripts/build-os-image.sh into .cache/os-image)")
	f.StringSliceVar(&o.realLinks, "real-links", nil, "real-boot: the shaped `LINKS`, BANDWIDTH/LATENCY each (default 1G/1ms,100M/20ms)")
	f.StringSliceVar(&o.realChunkSizes, "real-chunk-sizes", nil, fmt.Sprintf("real-boot: import the image and boot the basefs ways at each chunk size in `SIZES`, the first compared with the others (default %dK, basefs's default)", chunkstore.DefaultChunkSize>>10))
	f.DurationVar(&o.profileWindow, "profile-window", 0, "real-boot: the --profile-window of the host that records the boot profile (default 30s)")
	f.IntSliceVar(&o.stormHosts, "storm-hosts", nil, "storm: the fleet sizes `N,…` (default 1,2,4,8,16; 1,2,4 with --quick; the first is the lone-host baseline: give 1 first)")
	f.StringSliceVar(&o.stormFrom, "storm-from", nil, "storm: where the image comes from, `SOURCES` in order: tier (published to the tier) and/or glance (a Glance image, started by scripts/start-glance.sh, whose manifest alone is in the tier; chunks come from peers or Glance) (default tier)")
	f.StringVar(&o.profileDir, "profile", "", "read: write the basefs daemon's CPU profile while the patterns run, and `go tool pprof -top` of it, into `DIR`")
	// Sizes for tests and experiments.
	f.StringVar(&o.guestRead, "guest-read", "", "bytes the test guest reads and hashes (default 16M)")
	f.StringVar(&o.readSize, "read-size", "", "read and verify-cost image size")
	f.StringVar(&o.coldSize, "cold-size", "", "concurrent-cold image size")
	f.IntVar(&o.readers, "readers", 0, "concurrent-cold readers (default 8)")
	f.StringSliceVar(&o.scaleSizes, "scale-sizes", nil, "scale image sizes (default 1G,4G,16G)")
	f.StringVar(&o.dedupSize, "dedup-size", "", "dedup image size")
	f.DurationVar(&o.fioRuntime, "fio-runtime", 0, "each fio run (whole seconds)")
	for _, h := range []string{"guest-read", "read-size", "cold-size", "readers", "scale-sizes", "dedup-size", "fio-runtime"} {
		f.MarkHidden(h)
	}
}

// usageError is a mistake in the command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// benchOptions checks the flags and turns them into bench.Options; set tells which flags the
// command line gave (a flag it did not give keeps bench's default).
func (o *options) benchOptions(scenarios []string, set func(flag string) bool) (bench.Options, error) {
	b := bench.Options{
		Scenarios: scenarios, Out: o.out, Runs: o.runs, Quick: o.quick, BinDir: o.bin, GuestDir: o.guest,
		WorkDir: o.work, Keep: o.keep, VirtType: o.virtType, Latency: o.latency, FioRuntime: o.fioRuntime,
		Readers: o.readers, OSImageDir: o.osImage, ProfileWindow: o.profileWindow, ProfileDir: o.profileDir,
	}
	if set("runs") && o.runs < 1 {
		return b, usageError{fmt.Sprintf("--runs %d: must be at least 1", o.runs)}
	}
	if set("fio-runtime") && o.fioRuntime < time.Second {
		return b, usageError{fmt.Sprintf("--fio-runtime %s: must be at least 1s (fio runs whole seconds)", o.fioRuntime)}
	}
	if set("profile") && o.profileDir == "" {
		return b, usageError{"--profile: wants a directory"}
	}
	if o.profileWindow < 0 {
		return b, usageError{"--profile-window: must not be negative"}
	}
	for _, l := range o.realLinks {
		bwText, latText, ok := strings.Cut(l, "/")
		bw, err := parseBits(bwText)
		lat, lerr := time.ParseDuration(latText)
		if !ok || err != nil || lerr != nil || lat < 0 {
			return b, usageError{fmt.Sprintf("--real-links %q: want BANDWIDTH/LATENCY, e.g. 100M/20ms", l)}
		}
		b.RealLinks = append(b.RealLinks, bench.Link{Bandwidth: bw, Latency: lat})
	}
	for _, v := range o.realChunkSizes {
		n, err := agent.ParseSize(v)
		if err == nil {
			err = chunkstore.ValidChunkSize(n)
		}
		if err != nil {
			return b, usageError{fmt.Sprintf("--real-chunk-sizes %q: %v", v, err)}
		}
		b.RealChunkSizes = append(b.RealChunkSizes, n)
	}
	if o.latency < 0 {
		return b, usageError{"--latency: must not be negative"}
	}
	for i, n := range o.stormHosts {
		if n < 1 || n > 200 || (i == 0 && n != 1) {
			return b, usageError{fmt.Sprintf("--storm-hosts %v: want 1 first (the lone-host baseline), then sizes up to 200", o.stormHosts)}
		}
	}
	b.StormHosts = o.stormHosts
	for _, s := range o.stormFrom {
		if s != "tier" && s != "glance" {
			return b, usageError{fmt.Sprintf("--storm-from %v: want tier and/or glance", o.stormFrom)}
		}
	}
	b.StormFrom = o.stormFrom
	bw, err := parseBits(o.bandwidth)
	if err != nil {
		return b, usageError{"--bandwidth: " + err.Error()}
	}
	b.Bandwidth = bw
	for _, s := range []struct {
		flag string
		in   string
		out  *int64
	}{{"guest-read", o.guestRead, &b.GuestRead}, {"read-size", o.readSize, &b.ReadSize}, {"cold-size", o.coldSize, &b.ColdSize}, {"dedup-size", o.dedupSize, &b.DedupSize}} {
		if s.in == "" {
			continue
		}
		n, err := agent.ParseSize(s.in)
		if err != nil || n <= 0 || n%bench.MiB != 0 {
			return b, usageError{fmt.Sprintf("--%s %q: want a positive whole number of MiB, e.g. 64M", s.flag, s.in)}
		}
		*s.out = n
	}
	for _, s := range []struct {
		flag string
		in   []string
		out  *[]int64
	}{{"sizes", o.bootSizes, &b.BootSizes}, {"scale-sizes", o.scaleSizes, &b.ScaleSizes}} {
		for _, v := range s.in {
			n, err := agent.ParseSize(v)
			if err != nil || n < 64*bench.MiB || n%bench.MiB != 0 {
				return b, usageError{fmt.Sprintf("--%s %q: want whole MiB of at least 64M, e.g. 1G", s.flag, v)}
			}
			*s.out = append(*s.out, n)
		}
	}
	return b, nil
}

// parseBits parses a bit rate: a number with an optional K, M or G suffix (powers of 1000).
func parseBits(s string) (float64, error) {
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1e9, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1e6, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "K"):
		mult, s = 1e3, strings.TrimSuffix(s, "K")
	}
	var v float64
	if _, err := fmt.Sscanf(s, "%g", &v); err != nil || v <= 0 {
		return 0, fmt.Errorf("want a positive rate such as 1G or 100M")
	}
	return v * mult, nil
}

func main() {
	// The read scenario's loopback baseline is this binary too, in a process of its own.
	if len(os.Args) > 1 && os.Args[1] == bench.LoopbackCommand {
		os.Exit(bench.ServeLoopback(os.Args[2:], os.Stdout, os.Stderr))
	}
	// scripts/fleet.sh's shaped links to the services of the root namespace.
	if len(os.Args) > 1 && os.Args[1] == bench.ShaperCommand {
		os.Exit(bench.ServeShaper(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	var o options
	f := pflag.NewFlagSet("basefs-bench", pflag.ContinueOnError)
	f.SetOutput(stderr)
	f.Usage = func() {
		fmt.Fprintf(stderr, "basefs-bench — basefs against its baselines, on this machine\n\n"+
			"Usage: basefs-bench [SCENARIO…] [--out DIR] [--runs N] [--quick] [flags]\n\n"+
			"Scenarios (default all, run in this order): %s\n\nFlags:\n%s", strings.Join(bench.Scenarios(), ", "), f.FlagUsages())
	}
	o.AddFlags(f)
	if err := f.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	for _, a := range f.Args() {
		if !slices.Contains(bench.Scenarios(), a) {
			fmt.Fprintf(stderr, "basefs-bench: unknown scenario %q; the scenarios are %s\n", a, strings.Join(bench.Scenarios(), ", "))
			return 2
		}
	}
	bo, err := o.benchOptions(f.Args(), f.Changed)
	if err != nil {
		fmt.Fprintf(stderr, "basefs-bench: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bo.Progress = stderr
	command := append([]string{"basefs-bench"}, args...)
	if _, err := bench.Run(ctx, bo, command); err != nil {
		fmt.Fprintf(stderr, "basefs-bench: %v\n", err)
		return 1
	}
	return 0
}
