package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Point is one measurement: X the fleet size, Y the metric.
type Point struct{ X, Y float64 }

// Line is one variant of the load across fleet sizes.
type Line struct {
	Name   string
	Points []Point
}

// Panel is one metric, with a line per variant.
type Panel struct {
	Title string
	Lines []Line
}

// Chart geometry, in SVG user units.
const (
	panelW, panelH = 320, 260
	marginL        = 60
	marginR        = 20
	marginT        = 50
	marginB        = 50
	legendRow      = 18
)

// palette colours the lines, one per variant, the same in every panel.
var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"}

// Render writes an SVG of the panels side by side: each has its own Y axis
// from 0, a shared X axis of fleet sizes (logarithmic when they span a
// factor of 10 or more, so 1k, 3k, 10k and 30k are evenly apart), ticks at
// the measured sizes, one polyline with a labelled marker per point per
// line, and one legend for the lines below.
func Render(w io.Writer, title, xLabel string, panels []Panel) error {
	var names []string
	seen := map[string]bool{}
	minX, maxX := math.Inf(1), math.Inf(-1)
	var xs []float64
	for _, p := range panels {
		for _, l := range p.Lines {
			if !seen[l.Name] {
				seen[l.Name] = true
				names = append(names, l.Name)
			}
			for _, pt := range l.Points {
				minX, maxX = math.Min(minX, pt.X), math.Max(maxX, pt.X)
				if !slices.Contains(xs, pt.X) {
					xs = append(xs, pt.X)
				}
			}
		}
	}
	if len(xs) == 0 {
		return fmt.Errorf("render chart: no points")
	}
	logX := minX > 0 && maxX/minX >= 10
	xpos := func(x float64) float64 {
		if maxX == minX {
			return marginL + (panelW-marginL-marginR)/2
		}
		f := (x - minX) / (maxX - minX)
		if logX {
			f = math.Log(x/minX) / math.Log(maxX/minX)
		}
		return marginL + f*(panelW-marginL-marginR)
	}
	width := panelW * len(panels)
	height := panelH + legendRow*len(names) + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text class="title" x="%d" y="18" text-anchor="middle" font-size="14" font-weight="bold">%s</text>`+"\n", width/2, esc(title))
	for i, p := range panels {
		maxY := 0.0
		for _, l := range p.Lines {
			for _, pt := range l.Points {
				maxY = math.Max(maxY, pt.Y)
			}
		}
		top, step := niceScale(maxY)
		ypos := func(y float64) float64 { return panelH - marginB - y/top*(panelH-marginT-marginB) }
		fmt.Fprintf(&b, `<g class="panel" transform="translate(%d,0)">`+"\n", i*panelW)
		fmt.Fprintf(&b, `<text class="panel-title" x="%d" y="%d" text-anchor="middle" font-size="12" font-weight="bold">%s</text>`+"\n",
			(marginL+panelW-marginR)/2, marginT-14, esc(p.Title))
		for y := 0.0; y <= top+step/2; y += step {
			fmt.Fprintf(&b, `<line class="grid" x1="%d" y1="%s" x2="%d" y2="%s" stroke="#ddd"/>`+"\n", marginL, f1(ypos(y)), panelW-marginR, f1(ypos(y)))
			fmt.Fprintf(&b, `<text class="y-tick" x="%d" y="%s" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", marginL-5, f1(ypos(y)), num(y))
		}
		for _, x := range xs {
			fmt.Fprintf(&b, `<line x1="%s" y1="%d" x2="%s" y2="%d" stroke="black"/>`+"\n", f1(xpos(x)), panelH-marginB, f1(xpos(x)), panelH-marginB+4)
			fmt.Fprintf(&b, `<text class="x-tick" x="%s" y="%d" text-anchor="middle">%s</text>`+"\n", f1(xpos(x)), panelH-marginB+16, num(x))
		}
		fmt.Fprintf(&b, `<line class="axis x-axis" x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", marginL, panelH-marginB, panelW-marginR, panelH-marginB)
		fmt.Fprintf(&b, `<line class="axis y-axis" x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", marginL, marginT, marginL, panelH-marginB)
		fmt.Fprintf(&b, `<text class="x-label" x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", (marginL+panelW-marginR)/2, panelH-marginB+34, esc(xLabel))
		for _, l := range p.Lines {
			colour := palette[slices.Index(names, l.Name)%len(palette)]
			pts := make([]string, len(l.Points))
			for j, pt := range l.Points {
				pts[j] = f1(xpos(pt.X)) + "," + f1(ypos(pt.Y))
			}
			fmt.Fprintf(&b, `<polyline class="series" data-name="%s" points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", esc(l.Name), strings.Join(pts, " "), colour)
			for _, pt := range l.Points {
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", f1(xpos(pt.X)), f1(ypos(pt.Y)), colour)
				fmt.Fprintf(&b, `<text class="value" x="%s" y="%s" text-anchor="middle" font-size="9" fill="%s">%s</text>`+"\n", f1(xpos(pt.X)), f1(ypos(pt.Y)-6), colour, num(pt.Y))
			}
		}
		b.WriteString("</g>\n")
	}
	for i, n := range names {
		y := panelH + legendRow*i + 4
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>`+"\n", marginL, y, marginL+24, y, palette[i%len(palette)])
		fmt.Fprintf(&b, `<text class="legend" x="%d" y="%d" dominant-baseline="middle">%s</text>`+"\n", marginL+30, y, esc(n))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("write chart: %w", err)
	}
	return nil
}

// niceScale is the axis step (1, 2, 2.5 or 5 times a power of ten, giving
// three or four intervals) and the top, the first multiple of the step at or
// above maxY.
func niceScale(maxY float64) (top, step float64) {
	if maxY <= 0 {
		return 1, 0.25
	}
	raw := maxY / 4
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if step = m * mag; step >= raw {
			break
		}
	}
	return math.Ceil(maxY/step) * step, step
}

// num prints v shortly: 30000 as 30k, 1.25 as 1.25.
func num(v float64) string {
	switch {
	case v >= 1000 && math.Mod(v, 1000) == 0:
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + "k"
	case v >= 100:
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	default:
		return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
	}
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func esc(s string) string { return html.EscapeString(s) }
