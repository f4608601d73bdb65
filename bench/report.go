package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// writeReport writes results.json, report.md and every figure of rep into dir. Files are
// replaced atomically (temp file, rename), so a reader never sees half a report.
func writeReport(rep *Report, dir string) error {
	for _, r := range rep.Results {
		for _, f := range r.Figures {
			if err := renderFigure(f, dir); err != nil {
				return fmt.Errorf("figure %s: %w", f.File, err)
			}
		}
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, "results.json"), append(js, '\n')); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "report.md"), []byte(markdown(rep)))
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// markdown renders the report for people.
func markdown(rep *Report) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# basefs-bench report\n\n")
	mode := "full"
	if rep.Quick {
		mode = "quick (--quick)"
	}
	p("Run %s → %s (%s), %d run(s) per measurement, %s pass.  \n", rep.Started.Format(time.RFC3339),
		rep.Finished.Format(time.RFC3339), rep.Finished.Sub(rep.Started).Round(time.Second), rep.Runs, mode)
	p("Command: `%s`\n\n", strings.Join(rep.Command, " "))

	m := rep.Machine
	p("## Machine\n\n| | |\n| --- | --- |\n")
	p("| CPU | %s |\n| cores | %d |\n| memory | %d MiB |\n| kernel | %s |\n| OS | %s |\n", m.CPU, m.Cores, m.MemoryMB, m.Kernel, m.OS)
	p("| date | %s |\n| qemu | %s |\n| fio | %s |\n| Go | %s |\n", rep.Started.Format("2006-01-02"), m.Qemu, m.Fio, m.Go)
	if m.Commit != "" {
		p("| basefs commit | %s |\n", m.Commit)
	}
	p("\n## How to read this report\n\n")
	p("Every figure below was measured in this run; none is typed in. Each measurement was repeated\n")
	p("the stated number of times, basefs and its baselines alternating, and is shown as its **median**;\n")
	p("**spread** is min–max over the runs. **ratio** = basefs median ÷ baseline median: for times, bytes\n")
	p("and memory lower is better (a ratio below 1 favours basefs), for throughput higher is better.\n")
	p("The column *better* says which. Each scenario states what it measures, how, and its settings,\n")
	p("and the host's load average around it: timings from a busy host are noisier (compare the spread).\n\n")

	p("## Key figures\n\n")
	for _, r := range rep.Results {
		for _, h := range r.Highlights {
			p("- **%s**: %s\n", r.Name, h)
		}
		if r.Error != "" {
			p("- **%s**: FAILED: %s\n", r.Name, oneLine(r.Error))
		}
	}
	p("\n")

	for _, r := range rep.Results {
		p("## %s (`%s`)\n\n", r.Title, r.Name)
		if r.Measures != "" {
			p("%s\n\n", r.Measures)
		}
		if len(r.Settings) > 0 {
			p("Settings:\n\n")
			for _, s := range r.Settings {
				p("- %s: %s\n", s.Name, s.Value)
			}
			p("\n")
		}
		if r.Error != "" {
			p("**This scenario failed**: `%s`\n\n", oneLine(r.Error))
		}
		if len(r.Rows) > 0 {
			p("| metric | unit | better | basefs | median | baseline | median | ratio | spread basefs | spread baseline |\n")
			p("| --- | --- | --- | --- | ---: | --- | ---: | ---: | --- | --- |\n")
			for _, row := range r.Rows {
				base, baseMed, ratio, baseSpread := "—", "—", "—", "—"
				if row.Baseline != nil {
					base, baseMed, baseSpread = row.BaselineName, fmtNum(row.Baseline.Median), spread(*row.Baseline)
				}
				if row.Ratio != nil {
					ratio = fmtNum(*row.Ratio)
				}
				p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", row.Metric, row.Unit, row.Better,
					row.BasefsName, fmtNum(row.Basefs.Median), base, baseMed, ratio, spread(row.Basefs), baseSpread)
			}
			p("\n")
			b.WriteString(runRatioTable(r.Rows))
		}
		for _, f := range r.Figures {
			p("![%s](%s.svg)\n\n", f.Title, f.File)
		}
		for _, n := range r.Notes {
			p("- %s\n", n)
		}
		if len(r.Notes) > 0 {
			p("\n")
		}
		p("_Scenario time: %.0f s; host load average (1, 5, 15 min) %s at its start, %s at its end._\n\n", r.Seconds, r.Load[0], r.Load[1])
	}
	return b.String()
}

// runRatioTable is the table of the rows' ratios run by run (Row.RunRatios) and their
// median; empty when no row has them.
func runRatioTable(rows []Row) string {
	runs := 0
	for _, row := range rows {
		runs = max(runs, len(row.RunRatios))
	}
	if runs == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("Ratio basefs ÷ baseline within each run (they alternated in it), and the median of those:\n\n| metric | baseline |")
	for i := range runs {
		fmt.Fprintf(&b, " run %d |", i+1)
	}
	b.WriteString(" median |\n| --- | --- |" + strings.Repeat(" ---: |", runs+1) + "\n")
	for _, row := range rows {
		if len(row.RunRatios) == 0 {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s |", row.Metric, row.BaselineName)
		for i := range runs {
			v := "—"
			if i < len(row.RunRatios) {
				v = fmtNum(row.RunRatios[i])
			}
			fmt.Fprintf(&b, " %s |", v)
		}
		fmt.Fprintf(&b, " %s |\n", fmtNum(Summarize(row.RunRatios).Median))
	}
	b.WriteString("\n")
	return b.String()
}

func spread(s Summary) string {
	if len(s.Samples) <= 1 {
		return "1 run"
	}
	return fmt.Sprintf("%s–%s", fmtNum(s.Min), fmtNum(s.Max))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// fmtNum formats a measured number with about three significant digits, without exponents.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return fmt.Sprint(v)
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	case a >= 0.01:
		return fmt.Sprintf("%.3f", v)
	}
	return fmt.Sprintf("%.2g", v)
}

// sizeText formats a byte count as people write image sizes: "16 GiB", "512 MiB".
func sizeText(n int64) string {
	switch {
	case n >= GiB && n%GiB == 0:
		return fmt.Sprintf("%d GiB", n/GiB)
	case n >= MiB && n%MiB == 0:
		return fmt.Sprintf("%d MiB", n/MiB)
	case n >= KiB && n%KiB == 0:
		return fmt.Sprintf("%d KiB", n/KiB)
	}
	return fmt.Sprintf("%d bytes", n)
}
