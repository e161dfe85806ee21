package alerting

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkApply1000Projects measures one Apply at ECP's documented limit of
// 1000 projects (render, validate with rulefmt and Alertmanager's loader,
// write; the reloads go to fakes).
func BenchmarkApply1000Projects(b *testing.B) {
	e := newApplyEnv(b)
	projects := map[string]Settings{}
	for i := range 1000 {
		s := testProjects()[[]string{"alpha", "beta", "gamma"}[i%3]]
		projects[fmt.Sprintf("project-%04d", i)] = s
	}
	// The first Apply writes and validates everything (the cold figure);
	// the loop measures a settings change with everything already there.
	start := time.Now()
	if err := e.a.Apply(b.Context(), projects); err != nil {
		b.Fatal(err)
	}
	cold := time.Since(start)
	projects["project-0000"] = testProjects()["gamma"]
	for b.Loop() {
		if err := e.a.Apply(b.Context(), projects); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/apply")
	b.ReportMetric(float64(cold.Milliseconds()), "ms/cold-apply")
}

// BenchmarkRenderRules measures rendering and validating one project's file.
func BenchmarkRenderRules(b *testing.B) {
	s := testProjects()["beta"]
	o := testOptions()
	for b.Loop() {
		if _, err := RenderRules("beta", s, o); err != nil {
			b.Fatal(err)
		}
	}
}
