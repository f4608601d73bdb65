package bench

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Summary is one measured quantity over the runs: its median and spread (min, max), and the
// samples it was made from, in run order.
type Summary struct {
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	Samples []float64 `json:"samples"`
}

// Summarize returns the median, min and max of xs (which must not be empty). The median of
// an even count is the mean of the two middle samples.
func Summarize(xs []float64) Summary {
	s := Summary{Samples: slices.Clone(xs)}
	if len(xs) == 0 {
		return s
	}
	sorted := slices.Clone(xs)
	slices.Sort(sorted)
	n := len(sorted)
	s.Min, s.Max = sorted[0], sorted[n-1]
	if n%2 == 1 {
		s.Median = sorted[n/2]
	} else {
		s.Median = (sorted[n/2-1] + sorted[n/2]) / 2
	}
	return s
}

// Row is one line of a scenario's table: a metric measured for basefs (in one of its ways,
// BasefsName) and, when there is one, for a baseline. Ratio is basefs's median ÷ the
// baseline's median. RunRatios, when the scenario measured basefs and the baseline in the
// same runs (addPaired), is basefs ÷ baseline within each run, in run order: on a noisy
// host their median is steadier than the ratio of medians.
type Row struct {
	Metric       string    `json:"metric"`
	Unit         string    `json:"unit"`
	Better       string    `json:"better"` // "lower" or "higher"
	BasefsName   string    `json:"basefs_name"`
	Basefs       Summary   `json:"basefs"`
	BaselineName string    `json:"baseline_name,omitempty"`
	Baseline     *Summary  `json:"baseline,omitempty"`
	Ratio        *float64  `json:"ratio,omitempty"`
	RunRatios    []float64 `json:"run_ratios,omitempty"`
}

// Setting is one stated condition of a scenario (sizes, shaping, runs…).
type Setting struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Figure is a plot's data; the report renders it to File.svg and File.png.
type Figure struct {
	File   string    `json:"file"` // base name in the output directory, without extension
	Title  string    `json:"title"`
	XLabel string    `json:"x_label"`
	YLabel string    `json:"y_label"`
	Kind   string    `json:"kind"`            // "bar" (Categories) or "line" (X)
	Labels []string  `json:"labels"`          // one per point: bar categories or line x labels
	X      []float64 `json:"x,omitempty"`     // line: the x values
	LogX   bool      `json:"log_x,omitempty"` // line: log-scaled x axis
	Series []Series  `json:"series"`
}

// Series is one named set of points of a figure, aligned with its Labels.
type Series struct {
	Name   string    `json:"name"`
	Points []Summary `json:"points"`
}

// Result is what one scenario measured.
type Result struct {
	Name       string    `json:"name"`
	Title      string    `json:"title"`
	Measures   string    `json:"measures"` // what is measured, and how
	Settings   []Setting `json:"settings"`
	Rows       []Row     `json:"rows"`
	Highlights []string  `json:"highlights"` // the key figures, in words, from Rows
	Figures    []Figure  `json:"figures"`
	Notes      []string  `json:"notes,omitempty"`
	Error      string    `json:"error,omitempty"`
	Seconds    float64   `json:"seconds"`
	// Load is the host's load average (1, 5, 15 min) when the scenario started and ended:
	// other work on the machine shows here.
	Load [2]string `json:"load_average"`
}

func (r *Result) set(name, format string, a ...any) {
	r.Settings = append(r.Settings, Setting{name, fmt.Sprintf(format, a...)})
}

func (r *Result) highlight(format string, a ...any) {
	r.Highlights = append(r.Highlights, fmt.Sprintf(format, a...))
}

func (r *Result) note(format string, a ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, a...))
}

// add appends a row comparing basefs's samples with a baseline's (nil base: no baseline) and
// returns it.
func (r *Result) add(metric, unit, better, basefsName string, basefs []float64, baseName string, base []float64) Row {
	row := Row{Metric: metric, Unit: unit, Better: better, BasefsName: basefsName, Basefs: Summarize(basefs)}
	if base != nil {
		b := Summarize(base)
		row.BaselineName, row.Baseline = baseName, &b
		if b.Median != 0 && !math.IsNaN(b.Median) {
			ratio := row.Basefs.Median / b.Median
			row.Ratio = &ratio
		}
	}
	r.Rows = append(r.Rows, row)
	return row
}

// addPaired is add for samples taken in the same runs: basefs[i] and base[i] were measured
// in run i. It also records the ratio of each run; it adds none when the counts differ or a
// baseline sample is zero.
func (r *Result) addPaired(metric, unit, better, basefsName string, basefs []float64, baseName string, base []float64) Row {
	row := r.add(metric, unit, better, basefsName, basefs, baseName, base)
	ratios := runRatios(basefs, base)
	r.Rows[len(r.Rows)-1].RunRatios = ratios
	row.RunRatios = ratios
	return row
}

// runRatios returns a[i] ÷ b[i] for each i, or nil unless a and b have the same length and no
// b[i] is zero.
func runRatios(a, b []float64) []float64 {
	if len(a) != len(b) || len(a) == 0 {
		return nil
	}
	out := make([]float64, len(a))
	for i := range a {
		if b[i] == 0 {
			return nil
		}
		out[i] = a[i] / b[i]
	}
	return out
}

// Machine describes the host the run was made on.
type Machine struct {
	CPU      string `json:"cpu"`
	Cores    int    `json:"cores"`
	MemoryMB int64  `json:"memory_mib"`
	Kernel   string `json:"kernel"`
	OS       string `json:"os"`
	Go       string `json:"go"`
	Qemu     string `json:"qemu"`
	Fio      string `json:"fio"`
	Commit   string `json:"commit,omitempty"`
}

// Report is everything one invocation measured; it is written as results.json.
type Report struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Machine  Machine   `json:"machine"`
	Command  []string  `json:"command"`
	Runs     int       `json:"runs"`
	Quick    bool      `json:"quick"`
	Results  []*Result `json:"results"`
}

// series is a helper collecting samples per named variant and metric.
type series map[string][]float64

func (s series) add(key string, v float64) { s[key] = append(s[key], v) }

func key(parts ...any) string { return fmt.Sprint(parts...) }
