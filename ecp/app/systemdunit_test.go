package app

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestJourneyGuideLinksTheSystemdUnit: the registration guide names where
// ecp serves the agent's systemd unit, and ecp serves there the very file
// deploy/systemd ships, to anyone (the broker host has only curl).
func TestJourneyGuideLinksTheSystemdUnit(t *testing.T) {
	opts := testOptions(t)
	opts.ExternalURL = "https://ecp.example:8443"
	h := start(t, opts)
	admin, project := setupProject(t, h)
	var c clusterJSON
	h.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": "edge"}).decode(t, &c)
	var reg struct {
		SystemdUnit string `json:"systemdUnit"`
	}
	h.must(201, "POST", "/api/v1/clusters/"+c.ID+"/registration", admin, nil).decode(t, &reg)
	if reg.SystemdUnit != "https://ecp.example:8443/downloads/agent-exporter.service" {
		t.Fatalf("systemdUnit = %q", reg.SystemdUnit)
	}
	_, self, _, _ := runtime.Caller(0)
	want, err := os.ReadFile(filepath.Join(filepath.Dir(self), "..", "..", "deploy", "systemd", "agent-exporter.service"))
	if err != nil {
		t.Fatal(err)
	}
	r := h.must(200, "GET", "/downloads/agent-exporter.service", "", nil)
	if string(r.body) != string(want) || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("unit served as %q:\n%s", r.header.Get("Content-Type"), r.body)
	}
}
