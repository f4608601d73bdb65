package bench

import (
	"slices"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		in          []float64
		med, lo, hi float64
	}{
		{[]float64{3}, 3, 3, 3},
		{[]float64{5, 1, 3}, 3, 1, 5},
		{[]float64{4, 1, 2, 3}, 2.5, 1, 4},
	} {
		s := Summarize(tc.in)
		if s.Median != tc.med || s.Min != tc.lo || s.Max != tc.hi || len(s.Samples) != len(tc.in) || s.Samples[0] != tc.in[0] {
			t.Errorf("Summarize(%v) = %+v; want median %v, min %v, max %v, samples in run order", tc.in, s, tc.med, tc.lo, tc.hi)
		}
	}
}

func TestRowsAndMarkdown(t *testing.T) {
	r := &Result{Name: "x", Title: "X"}
	row := r.add("time", "s", "lower", "basefs", []float64{1, 2, 3}, "eager", []float64{8, 10, 12})
	if row.Ratio == nil || *row.Ratio != 0.2 || speedup(row) != "5.00×" {
		t.Errorf("ratio %v, speedup %s; want 0.2, 5.00×", row.Ratio, speedup(row))
	}
	none := r.add("rss", "MiB", "lower", "basefs", []float64{64}, "", nil)
	if none.Ratio != nil || none.Baseline != nil {
		t.Errorf("a row without a baseline has ratio %v", none.Ratio)
	}
	md := markdown(&Report{Runs: 3, Results: []*Result{r}})
	for _, want := range []string{"| time | s | lower | basefs | 2.00 | eager | 10.0 | 0.200 | 1.00–3.00 | 8.00–12.0 |", "| rss | MiB | lower | basefs | 64.0 | — | — | — | 1 run | — |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestParseFio(t *testing.T) {
	out := []byte("fio: some warning\n{\"jobs\": [{\"error\": 0, \"read\": {\"bw_bytes\": 123456789, \"io_bytes\": 1000, \"total_ios\": 7}}]}")
	if got, err := parseFio(out); err != nil || got != (fioResult{MBs: 123.456789, Bytes: 1000, IOs: 7}) {
		t.Errorf("parseFio = %+v, %v; want 123.456789 MB/s, 1000 bytes, 7 reads", got, err)
	}
	for _, bad := range []string{"", "{}", `{"jobs": [{"error": 5, "read": {"bw_bytes": 1, "io_bytes": 1}}]}`, `{"jobs": [{"read": {"bw_bytes": 0, "io_bytes": 0}}]}`} {
		if _, err := parseFio([]byte(bad)); err == nil {
			t.Errorf("parseFio(%q): no error", bad)
		}
	}
}

func TestReaderPlan(t *testing.T) {
	p := readerPlan(8, 512, 1)
	q := readerPlan(8, 512, 1)
	if len(p) != 8 || len(p[0]) != regionsPerReader {
		t.Fatalf("plan shape %d×%d", len(p), len(p[0]))
	}
	for i := range p {
		for j, off := range p[i] {
			if off != q[i][j] || off < 0 || off+regionMiB > 512 {
				t.Errorf("reader %d region %d at %d MiB: out of range or not reproducible", i, j, off)
			}
		}
	}
	if u := uniqueMiB([][]int64{{0, 2}, {8}}); u != 2+regionMiB+regionMiB {
		t.Errorf("uniqueMiB = %d", u)
	}
}

func TestColdBootExtents(t *testing.T) {
	xs := coldBootExtents(1*GiB, 16*MiB)
	if xs[0] != (extent{0, 32 * MiB}) || len(xs) != 4 || xs[len(xs)-1].Off+xs[len(xs)-1].Len > GiB {
		t.Errorf("coldBootExtents(1 GiB) = %v", xs)
	}
	if got := dataBytes(scaleExtents(16 * GiB)); got != 32*MiB {
		t.Errorf("scale image holds %d bytes of data, want 32 MiB at every size", got)
	}
}

func TestRunRatios(t *testing.T) {
	for _, tc := range []struct {
		a, b, want []float64
	}{
		{[]float64{2, 3, 8}, []float64{4, 3, 2}, []float64{0.5, 1, 4}},
		{[]float64{1, 2}, []float64{1}, nil},    // not paired
		{[]float64{1, 2}, []float64{1, 0}, nil}, // no ratio to zero
		{nil, nil, nil},
	} {
		got := runRatios(tc.a, tc.b)
		if !slices.Equal(got, tc.want) {
			t.Errorf("runRatios(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestPairedRowsMarkdown: a paired row keeps each run's ratio; the report shows them run by
// run with their median, which differs from the ratio of the medians.
func TestPairedRowsMarkdown(t *testing.T) {
	r := &Result{Name: "read", Title: "Read"}
	row := r.addPaired("rand 4 KiB, O_DIRECT", "MB/s", "higher", "basefs", []float64{10, 30, 20}, "go-fuse loopback", []float64{40, 30, 10})
	if !slices.Equal(row.RunRatios, []float64{0.25, 1, 2}) || !slices.Equal(r.Rows[0].RunRatios, row.RunRatios) {
		t.Errorf("run ratios %v (in the result %v), want [0.25 1 2]", row.RunRatios, r.Rows[0].RunRatios)
	}
	if *row.Ratio != 20.0/30 || Summarize(row.RunRatios).Median != 1 {
		t.Errorf("ratio of medians %v, median of run ratios %v; want 0.667, 1", *row.Ratio, Summarize(row.RunRatios).Median)
	}
	r.add("rss", "MiB", "lower", "basefs", []float64{64}, "", nil)
	md := markdown(&Report{Runs: 3, Results: []*Result{r}})
	for _, want := range []string{
		"| metric | baseline | run 1 | run 2 | run 3 | median |",
		"| rand 4 KiB, O_DIRECT | go-fuse loopback | 0.250 | 1.00 | 2.00 | 1.00 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "| rss | |") || strings.Count(md, "| rss |") != 1 {
		t.Errorf("an unpaired row is in the run table:\n%s", md)
	}
	if none := markdown(&Report{Runs: 1, Results: []*Result{{Name: "x", Rows: []Row{{Metric: "m"}}}}}); strings.Contains(none, "within each run") {
		t.Errorf("a result without paired rows has a run table:\n%s", none)
	}
}
