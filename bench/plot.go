package bench

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Figure sizes.
const (
	figWidth  = 9 * vg.Inch
	figHeight = 4.5 * vg.Inch
)

// renderFigure draws f into dir/f.File.svg and dir/f.File.png: grouped bars (one group per
// label, one bar per series) or lines (one per series, over X), each point its median with
// min–max error bars.
func renderFigure(f Figure, dir string) error {
	p := plot.New()
	p.Title.Text = f.Title
	p.X.Label.Text = f.XLabel
	p.Y.Label.Text = f.YLabel
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	for _, s := range f.Series {
		if len(s.Points) != len(f.Labels) {
			return fmt.Errorf("series %q has %d points for %d labels", s.Name, len(s.Points), len(f.Labels))
		}
	}
	switch f.Kind {
	case "bar":
		if err := addBars(p, f); err != nil {
			return err
		}
	case "line":
		if err := addLines(p, f); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown figure kind %q", f.Kind)
	}
	p.Y.Min = 0
	if p.Y.Max <= 0 {
		p.Y.Max = 1
	}
	p.Y.Max *= 1.15 // room for the legend
	for _, ext := range []string{".svg", ".png"} {
		if err := p.Save(figWidth, figHeight, filepath.Join(dir, f.File+ext)); err != nil {
			return err
		}
	}
	return nil
}

func addBars(p *plot.Plot, f Figure) error {
	n, k := len(f.Labels), len(f.Series)
	if n == 0 || k == 0 {
		return fmt.Errorf("no data")
	}
	group := 0.8                                       // of the space between two labels, in data units
	perUnit := float64(figWidth-80) / float64(n) * 0.8 // rough points per data unit
	width := vg.Length(perUnit * group / float64(k) * 0.9)
	for j, s := range f.Series {
		vals := make(plotter.Values, n)
		xys := make(plotter.XYs, n)
		errs := make(plotter.YErrors, n)
		shift := -group/2 + group/float64(k)*(float64(j)+0.5)
		for i, pt := range s.Points {
			vals[i] = pt.Median
			xys[i] = plotter.XY{X: float64(i) + shift, Y: pt.Median}
			errs[i].Low, errs[i].High = pt.Median-pt.Min, pt.Max-pt.Median
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return err
		}
		bars.XMin = shift
		bars.Color = plotutil.Color(j)
		bars.LineStyle.Width = 0
		p.Add(bars)
		p.Legend.Add(s.Name, bars)
		eb := &plotter.YErrorBars{XYs: xys, YErrors: errs, LineStyle: plotter.DefaultLineStyle, CapWidth: vg.Points(4)}
		p.Add(eb)
	}
	labels := make([]string, n)
	for i, l := range f.Labels {
		labels[i] = strings.ReplaceAll(l, ", ", "\n")
	}
	p.NominalX(labels...)
	p.X.Tick.Label.YAlign = draw.YTop
	p.X.Min, p.X.Max = -0.6, float64(n-1)+0.6
	return nil
}

func addLines(p *plot.Plot, f Figure) error {
	if len(f.X) != len(f.Labels) {
		return fmt.Errorf("%d x values for %d labels", len(f.X), len(f.Labels))
	}
	for j, s := range f.Series {
		xys := make(plotter.XYs, len(s.Points))
		errs := make(plotter.YErrors, len(s.Points))
		for i, pt := range s.Points {
			xys[i] = plotter.XY{X: f.X[i], Y: pt.Median}
			errs[i].Low, errs[i].High = pt.Median-pt.Min, pt.Max-pt.Median
		}
		l, sc, err := plotter.NewLinePoints(xys)
		if err != nil {
			return err
		}
		l.Color = plotutil.Color(j)
		l.Dashes = plotutil.Dashes(j)
		sc.Color = plotutil.Color(j)
		sc.Shape = plotutil.Shape(j)
		p.Add(l, sc)
		p.Legend.Add(s.Name, l, sc)
		eb := &plotter.YErrorBars{XYs: xys, YErrors: errs, LineStyle: plotter.DefaultLineStyle, CapWidth: vg.Points(4)}
		eb.LineStyle.Color = plotutil.Color(j)
		p.Add(eb)
	}
	ticks := make(plot.ConstantTicks, len(f.X))
	for i, x := range f.X {
		ticks[i] = plot.Tick{Value: x, Label: f.Labels[i]}
	}
	p.X.Tick.Marker = ticks
	if f.LogX {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, x := range f.X {
			lo, hi = min(lo, x), max(hi, x)
		}
		if lo > 0 {
			p.X.Scale = plot.LogScale{}
			p.X.Min, p.X.Max = lo/1.3, hi*1.3
		}
	}
	return nil
}
