package main

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// writePlots draws the SVG charts of a run: p95 latency against offered rate for S2 and its
// baseline, and S2-long's throughput per 10 % slice of the sale. A chart without data is
// skipped.
func writePlots(r *Report, dir, stamp string) ([]string, error) {
	var files []string
	var errs []error
	if f, err := plotS2(r, filepath.Join(dir, stamp+"-s2-p95-vs-rate.svg")); err != nil {
		errs = append(errs, err)
	} else if f != "" {
		files = append(files, f)
	}
	if f, err := plotSlices(r, filepath.Join(dir, stamp+"-s2-long-slices.svg")); err != nil {
		errs = append(errs, err)
	} else if f != "" {
		files = append(files, f)
	}
	return files, errors.Join(errs...)
}

func ratePoints(p *Profile) plotter.XYs {
	if p == nil {
		return nil
	}
	var xys plotter.XYs
	for _, s := range p.Rates {
		// A log axis cannot show 0; sub-millisecond p95s sit on its floor.
		xys = append(xys, plotter.XY{X: s.OfferedRate, Y: math.Max(s.P95MS, 0.1)})
	}
	return xys
}

func plotS2(r *Report, file string) (string, error) {
	platform, base := ratePoints(r.Profiles["S2"]), ratePoints(r.Profiles["S2.baseline"])
	if len(platform) == 0 && len(base) == 0 {
		return "", nil
	}
	p := plot.New()
	p.Title.Text = "S2 flash purchase: p95 latency vs offered rate (open loop)"
	// Both axes logarithmic: the platform and the baseline may be orders of magnitude apart.
	p.X.Label.Text = "offered purchases per second (log)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.TickerFunc(ticks125)
	p.Y.Label.Text = "p95 latency (ms, log)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.TickerFunc(ticks125)
	p.Legend.Top = true
	var lines []any
	if len(platform) > 0 {
		lines = append(lines, "platform (gateway → order → inventory, via sidecars)", platform)
	}
	if len(base) > 0 {
		lines = append(lines, "baseline (b): seed-style single process", base)
	}
	minX, maxX := math.Inf(1), 0.0
	for _, xy := range append(append(plotter.XYs{}, platform...), base...) {
		minX, maxX = math.Min(minX, xy.X), math.Max(maxX, xy.X)
	}
	slo := r.Profiles["S2"]
	if slo == nil {
		slo = r.Profiles["S2.baseline"]
	}
	lines = append(lines, fmt.Sprintf("p95 objective %.0f ms", slo.SLOMS), plotter.XYs{{X: minX, Y: slo.SLOMS}, {X: maxX, Y: slo.SLOMS}})
	if err := plotutil.AddLinePoints(p, lines...); err != nil {
		return "", err
	}
	// Head room for the legend above the highest point.
	p.Y.Min, p.Y.Max = math.Min(p.Y.Min, slo.SLOMS)/2, math.Max(p.Y.Max, slo.SLOMS)*8
	if err := p.Save(9*vg.Inch, 5*vg.Inch, file); err != nil {
		return "", err
	}
	return file, nil
}

func plotSlices(r *Report, file string) (string, error) {
	if len(r.Slices) == 0 {
		return "", nil
	}
	vals := make(plotter.Values, len(r.Slices))
	names := make([]string, len(r.Slices))
	for i, s := range r.Slices {
		vals[i] = s.UnitsPerSec
		names[i] = fmt.Sprintf("%d–%d%%", i*10, (i+1)*10)
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("S2-long: purchases per second per 10%% slice of the sale (%d units)", r.Slices[len(r.Slices)-1].UnitsTo)
	p.Y.Label.Text = "units sold per second"
	bars, err := plotter.NewBarChart(vals, vg.Points(28))
	if err != nil {
		return "", err
	}
	bars.Color = plotutil.Color(0)
	p.Add(bars)
	p.NominalX(names...)
	if err := p.Save(9*vg.Inch, 4*vg.Inch, file); err != nil {
		return "", err
	}
	return file, nil
}

// ticks125 labels a log axis at 1, 2 and 5 times each power of ten within [min, max].
func ticks125(min, max float64) []plot.Tick {
	var out []plot.Tick
	for e := math.Floor(math.Log10(min)); math.Pow(10, e) <= max; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v >= min && v <= max {
				out = append(out, plot.Tick{Value: v, Label: fmt.Sprintf("%g", v)})
			}
		}
	}
	return out
}
