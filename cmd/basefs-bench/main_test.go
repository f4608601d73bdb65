package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/bench"
	"github.com/basefs/basefs/chunkstore/testenv"
)

// TestQuickRead runs the real basefs-bench binary (and the real daemon) on the read scenario
// with a tiny image and checks that results.json, report.md and the plots are written and
// hold measured numbers, so the benchmark suite cannot rot unnoticed.
func TestQuickRead(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedFUSE(t)
	testenv.NeedBinary(t, "fio", "dd")
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator), "./cmd/basefs", "./cmd/basefs-bench")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, prof := filepath.Join(t.TempDir(), "out"), filepath.Join(t.TempDir(), "profile")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "basefs-bench"), "--quick", "--out", out,
		"--read-size", "16M", "--fio-runtime", "1s", "--profile", prof, "read")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("basefs-bench: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "read") || !strings.Contains(stderr.String(), "MB/s") {
		t.Errorf("no progress on stderr:\n%s", stderr.String())
	}

	var rep bench.Report
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if rep.Runs != 1 || !rep.Quick || rep.Machine.Cores < 1 || rep.Machine.CPU == "" || rep.Machine.Kernel == "" {
		t.Errorf("results.json: runs %d, quick %v, machine %+v", rep.Runs, rep.Quick, rep.Machine)
	}
	if len(rep.Results) != 1 || rep.Results[0].Name != "read" || rep.Results[0].Error != "" {
		t.Fatalf("results.json: want one successful read result, got %+v", rep.Results)
	}
	r := rep.Results[0]
	// 8 patterns (QD1 and QD16) against 2 baselines, and CPU per read of the 5 O_DIRECT ones.
	if len(r.Rows) != 21 || len(r.Highlights) != 6 || len(r.Figures) != 3 {
		t.Errorf("read: %d rows, %d highlights, %d figures; want 21, 6, 3", len(r.Rows), len(r.Highlights), len(r.Figures))
	}
	for _, row := range r.Rows {
		if row.Basefs.Median <= 0 || row.Baseline == nil || row.Baseline.Median <= 0 || row.Ratio == nil || *row.Ratio <= 0 ||
			len(row.Basefs.Samples) != 1 || len(row.RunRatios) != 1 {
			t.Errorf("row %q: basefs %+v, baseline %+v, ratio %v, run ratios %v: want measured numbers", row.Metric, row.Basefs, row.Baseline, row.Ratio, row.RunRatios)
		}
	}
	for _, f := range []string{"read-all.pprof", "read-rand-4-kib-qd16-o_direct.pprof"} {
		if b, err := os.ReadFile(filepath.Join(prof, f)); err != nil || !bytes.HasPrefix(b, []byte("\x1f\x8b")) {
			t.Errorf("--profile: %s: %v (%d bytes), want a gzipped pprof profile", f, err, len(b))
		}
	}
	if top, err := os.ReadFile(filepath.Join(prof, "read-all.top.txt")); err != nil || !bytes.Contains(top, []byte("flat%")) || !bytes.Contains(top, []byte("Type: cpu")) {
		t.Errorf("--profile: read-all.top.txt: %v:\n%s", err, top)
	}

	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# basefs-bench report", "| CPU |", "| kernel |", "## Key figures", "(`read`)"} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, re := range []string{
		`(?m)^\| seq 1 MiB, O_DIRECT \| MB/s \| higher \| [^|]+ \| [0-9.]+ \| go-fuse loopback \| [0-9.]+ \| [0-9.]+ \|`,
		`(?m)^\| rand 4 KiB QD16, O_DIRECT \| MB/s \| higher \| [^|]+ \| [0-9.]+ \| plain file \| [0-9.]+ \| [0-9.]+ \|`,
		`(?m)^\| rand 64 KiB QD16, O_DIRECT \| go-fuse loopback \| [0-9.]+ \| [0-9.]+ \|$`, // the run-by-run table
	} {
		if !regexp.MustCompile(re).Match(md) {
			t.Errorf("report.md has no measured row matching %s:\n%s", re, md)
		}
	}
	for _, f := range r.Figures {
		svg, err := os.ReadFile(filepath.Join(out, f.File+".svg"))
		if err != nil || !bytes.Contains(svg, []byte("<svg")) {
			t.Errorf("%s.svg: %v (%d bytes)", f.File, err, len(svg))
		}
		png, err := os.ReadFile(filepath.Join(out, f.File+".png"))
		if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Errorf("%s.png: %v (%d bytes)", f.File, err, len(png))
		}
		if !bytes.Contains(md, []byte("("+f.File+".svg)")) {
			t.Errorf("report.md does not show %s.svg", f.File)
		}
	}
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--help"}, 0},
		{[]string{"nosuch"}, 2},
		{[]string{"--runs"}, 2},
		{[]string{"--bandwidth", "fast", "dedup"}, 2},
		{[]string{"--sizes", "1K", "cold-boot"}, 2},
		{[]string{"--dedup-size", "3", "dedup"}, 2},
		{[]string{"--real-links", "1G", "real-boot"}, 2},
		{[]string{"--real-links", "1G/1ms,slow/20ms", "real-boot"}, 2},
		{[]string{"--real-links", "100M/-1ms", "real-boot"}, 2},
		{[]string{"--profile-window", "-1s", "real-boot"}, 2},
		{[]string{"--runs", "0", "read"}, 2},
		{[]string{"--fio-runtime", "0s", "read"}, 2},
		{[]string{"--profile", "", "read"}, 2},
		{[]string{"--real-chunk-sizes", "100K", "real-boot"}, 2},
		{[]string{"--real-chunk-sizes", "32K", "real-boot"}, 2},
		{[]string{"--real-chunk-sizes", "1M,big", "real-boot"}, 2},
	} {
		var stderr bytes.Buffer
		if code := run(tc.args, &stderr); code != tc.code {
			t.Errorf("basefs-bench %s: exit %d, want %d\n%s", strings.Join(tc.args, " "), code, tc.code, stderr.String())
		}
	}
}

func TestRealLinks(t *testing.T) {
	var o options
	o.bandwidth = "1G"
	o.realLinks = []string{"1G/1ms", "100M/20ms"}
	b, err := o.benchOptions([]string{"real-boot"}, func(string) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	want := []bench.Link{{Bandwidth: 1e9, Latency: time.Millisecond}, {Bandwidth: 100e6, Latency: 20 * time.Millisecond}}
	if len(b.RealLinks) != 2 || b.RealLinks[0] != want[0] || b.RealLinks[1] != want[1] {
		t.Errorf("--real-links %v: got %+v, want %+v", o.realLinks, b.RealLinks, want)
	}
	o.realChunkSizes = []string{"64K", "1M"}
	if b, err = o.benchOptions([]string{"real-boot"}, func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if len(b.RealChunkSizes) != 2 || b.RealChunkSizes[0] != 64<<10 || b.RealChunkSizes[1] != 1<<20 {
		t.Errorf("--real-chunk-sizes %v: got %v", o.realChunkSizes, b.RealChunkSizes)
	}
}

func TestParseBits(t *testing.T) {
	for in, want := range map[string]float64{"1G": 1e9, "100M": 1e8, "2.5K": 2500, "64": 64} {
		if got, err := parseBits(in); err != nil || got != want {
			t.Errorf("parseBits(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "-1G", "0", "fast"} {
		if _, err := parseBits(in); err == nil {
			t.Errorf("parseBits(%q): no error", in)
		}
	}
}
