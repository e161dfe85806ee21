package main

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/ecpio/ecp/bench/internal/fleetreport"
)

// element is one SVG element as the test reads it.
type element struct {
	name  string
	attrs map[string]string
	text  string
	// panel is the index of the enclosing panel group, -1 outside one.
	panel int
}

// parseSVG decodes the document (it must be well-formed XML) into its
// elements.
func parseSVG(t *testing.T, doc string) []element {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(doc))
	var els []element
	var stack []int
	panel, panels := -1, 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("chart is not well-formed XML: %v\n%s", err, doc)
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			e := element{name: tk.Name.Local, attrs: map[string]string{}, panel: panel}
			for _, a := range tk.Attr {
				e.attrs[a.Name.Local] = a.Value
			}
			if e.name == "g" && e.attrs["class"] == "panel" {
				panel, panels = panels, panels+1
				e.panel = panel
			}
			els = append(els, e)
			stack = append(stack, len(els)-1)
		case xml.CharData:
			if len(stack) > 0 {
				els[stack[len(stack)-1]].text += string(tk)
			}
		case xml.EndElement:
			if e := els[stack[len(stack)-1]]; e.name == "g" && e.attrs["class"] == "panel" {
				panel = -1
			}
			stack = stack[:len(stack)-1]
		}
	}
	return els
}

func TestRenderChart(t *testing.T) {
	sums := []fleetreport.Summary{}
	for _, n := range []int{1000, 3000, 10000, 30000} {
		sums = append(sums,
			fleetreport.Summary{Agents: n, ECPCPUPercent: float64(n) / 1000, RSSMiB: int64(100 + n/100), ReportP99Millis: 1.5},
			fleetreport.Summary{Agents: n, RemoteWriteSeries: 200, RemoteWriteBackend: "prometheus", ECPCPUPercent: float64(n) / 500, RSSMiB: int64(120 + n/100), ReportP99Millis: 3.7})
	}
	var b strings.Builder
	if err := Render(&b, "fleet <title>", "agents", panels(mergeRuns(nil, sums))); err != nil {
		t.Fatal(err)
	}
	els := parseSVG(t, b.String())
	if els[0].name != "svg" {
		t.Fatalf("root element %q, want svg", els[0].name)
	}
	byClass := map[string][]element{}
	for _, e := range els {
		for c := range strings.FieldsSeq(e.attrs["class"]) {
			byClass[c] = append(byClass[c], e)
		}
	}
	if got := byClass["title"]; len(got) != 1 || got[0].text != "fleet <title>" {
		t.Errorf("title %+v, want the escaped title once", got)
	}
	wantTitles := []string{"ecp CPU (% of one core)", "ecp RSS (MiB)", "report p99 (ms)"}
	if got := byClass["panel-title"]; len(got) != len(wantTitles) {
		t.Fatalf("%d panel titles, want %d", len(got), len(wantTitles))
	}
	for i, want := range wantTitles {
		if got := byClass["panel-title"][i]; got.text != want || got.panel != i {
			t.Errorf("panel %d titled %q (in panel %d), want %q", i, got.text, got.panel, want)
		}
	}
	variants := []string{"200 series/agent to prometheus", "remote write off"}
	for p := range wantTitles {
		var xAxes, yAxes, xTicks, xLabels int
		var lines []element
		for _, e := range els {
			if e.panel != p {
				continue
			}
			switch c := e.attrs["class"]; {
			case c == "axis x-axis":
				xAxes++
			case c == "axis y-axis":
				yAxes++
			case c == "x-tick":
				xTicks++
			case c == "x-label" && e.text == "agents":
				xLabels++
			case c == "series":
				lines = append(lines, e)
			}
		}
		if xAxes != 1 || yAxes != 1 || xTicks != 4 || xLabels != 1 {
			t.Errorf("panel %d: %d x axes, %d y axes, %d x ticks, %d x labels; want 1, 1, 4 (one per size), 1", p, xAxes, yAxes, xTicks, xLabels)
		}
		if len(lines) != len(variants) {
			t.Fatalf("panel %d: %d polylines, want one per variant (%d)", p, len(lines), len(variants))
		}
		for i, l := range lines {
			if l.attrs["data-name"] != variants[i] {
				t.Errorf("panel %d line %d named %q, want %q", p, i, l.attrs["data-name"], variants[i])
			}
			if pts := strings.Fields(l.attrs["points"]); len(pts) != 4 {
				t.Errorf("panel %d line %d: %d points, want 4", p, i, len(pts))
			}
		}
	}
	var ticks []string
	for _, e := range byClass["x-tick"][:4] {
		ticks = append(ticks, e.text)
	}
	if strings.Join(ticks, " ") != "1k 3k 10k 30k" {
		t.Errorf("x ticks %v, want 1k 3k 10k 30k", ticks)
	}
	// Logarithmic X: 1k→10k as wide as 3k→30k.
	pts := strings.Fields(byClass["series"][0].attrs["points"])
	x := func(i int) string { return strings.Split(pts[i], ",")[0] }
	if d1, d2 := xDiff(t, x(0), x(2)), xDiff(t, x(1), x(3)); d1 != d2 {
		t.Errorf("x distance 1k→10k %v, 3k→30k %v; want equal on a log axis", d1, d2)
	}
	if got := byClass["legend"]; len(got) != 2 || got[0].text != variants[0] || got[1].text != variants[1] {
		t.Errorf("legend %+v, want the two variants", got)
	}
}

func xDiff(t *testing.T, a, b string) float64 {
	t.Helper()
	var fa, fb float64
	if _, err := fmt.Sscan(a, &fa); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Sscan(b, &fb); err != nil {
		t.Fatal(err)
	}
	return fb - fa
}

func TestNiceScale(t *testing.T) {
	for _, tc := range []struct{ max, top, step float64 }{
		{0, 1, 0.25}, {7.3, 8, 2}, {94, 100, 25}, {282, 300, 100}, {1.1, 1.5, 0.5},
	} {
		if top, step := niceScale(tc.max); top != tc.top || step != tc.step {
			t.Errorf("niceScale(%v) = %v, %v; want %v, %v", tc.max, top, step, tc.top, tc.step)
		}
	}
}

func TestMergeRunsReplacesSameSizeAndVariant(t *testing.T) {
	old := []fleetreport.Summary{{Agents: 1000, ECPCPUPercent: 9}, {Agents: 3000, ECPCPUPercent: 20}}
	got := mergeRuns(old, []fleetreport.Summary{{Agents: 1000, ECPCPUPercent: 5}, {Agents: 1000, RemoteWriteSeries: 200, RemoteWriteBackend: "sink"}})
	if len(got) != 3 || got[1].Agents != 1000 || got[1].ECPCPUPercent != 5 || got[2].Agents != 3000 || got[0].RemoteWriteSeries != 200 {
		t.Errorf("merged %+v; want the 1000-agent run replaced, the 3000 kept, the new variant added", got)
	}
}
