package alerts

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/httpapi"
)

// TestSilenceRequestValidation: every field is bounded and named when
// wrong, and whatever the request says, the project matcher is ecp's.
func TestSilenceRequestValidation(t *testing.T) {
	alert := &Alert{Labels: map[string]string{"alertname": "EMQXRuleAbnormal", "project": "p1", "cluster": "c1", "id": "r1"}}
	for _, tc := range []struct {
		name  string
		req   SilenceRequest
		alert *Alert
		field string // "" with want set: accepted
		want  []Matcher
	}{
		{name: "a rule in a cluster", req: SilenceRequest{Rule: "connectorAbnormal", Cluster: "c1", Duration: "2h", Comment: "maintenance"},
			want: []Matcher{{Name: "alertname", Value: "EMQXConnectorAbnormal|EMQXActionAbnormal", IsRegex: true, IsEqual: true},
				{Name: "cluster", Value: "c1", IsEqual: true}, {Name: "project", Value: "p1", IsEqual: true}}},
		{name: "one alert by its labels", req: SilenceRequest{Alert: "a1", Duration: "30d", Comment: "known"}, alert: alert,
			want: []Matcher{{Name: "alertname", Value: "EMQXRuleAbnormal", IsEqual: true}, {Name: "cluster", Value: "c1", IsEqual: true},
				{Name: "id", Value: "r1", IsEqual: true}, {Name: "project", Value: "p1", IsEqual: true}}},
		{name: "an alert of another project is no alert", req: SilenceRequest{Alert: "a1", Duration: "1h", Comment: "x"}, field: "alert"},
		{name: "a label on project", req: SilenceRequest{Labels: map[string]string{"project": "p2"}, Duration: "1h", Comment: "x"}, field: "labels.project"},
		{name: "a project label among others", req: SilenceRequest{Cluster: "c1", Labels: map[string]string{"project": "p2", "id": "r1"}, Duration: "1h", Comment: "x"}, field: "labels.project"},
		{name: "nothing to silence: the whole project", req: SilenceRequest{Duration: "1h", Comment: "x"}, field: ""},
		{name: "alert with more", req: SilenceRequest{Alert: "a1", Cluster: "c1", Duration: "1h", Comment: "x"}, alert: alert, field: "alert"},
		{name: "no duration", req: SilenceRequest{Cluster: "c1", Comment: "x"}, field: "duration"},
		{name: "a duration past 30 days", req: SilenceRequest{Cluster: "c1", Duration: "31d", Comment: "x"}, field: "duration"},
		{name: "a duration under a minute", req: SilenceRequest{Cluster: "c1", Duration: "30s", Comment: "x"}, field: "duration"},
		{name: "no comment", req: SilenceRequest{Cluster: "c1", Duration: "1h", Comment: "  "}, field: "comment"},
		{name: "a long comment", req: SilenceRequest{Cluster: "c1", Duration: "1h", Comment: strings.Repeat("é", MaxSilenceComment+1)}, field: "comment"},
		{name: "an unknown rule", req: SilenceRequest{Rule: "EMQXRuleAbnormal", Duration: "1h", Comment: "x"}, field: "rule"},
		{name: "a cluster id with a quote", req: SilenceRequest{Cluster: `c1"`, Duration: "1h", Comment: "x"}, field: "cluster"},
		{name: "a bad label name", req: SilenceRequest{Labels: map[string]string{"1x": "v"}, Duration: "1h", Comment: "x"}, field: "labels.1x"},
		{name: "an empty label value", req: SilenceRequest{Labels: map[string]string{"id": ""}, Duration: "1h", Comment: "x"}, field: "labels.id"},
		{name: "a label cluster repeats", req: SilenceRequest{Cluster: "c1", Labels: map[string]string{"cluster": "c2"}, Duration: "1h", Comment: "x"}, field: "labels.cluster"},
		{name: "too many labels", req: SilenceRequest{Labels: manyLabels(MaxSilenceLabels + 1), Duration: "1h", Comment: "x"}, field: "labels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, d, err := tc.req.matchers("p1", tc.alert)
			if tc.want != nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !slices.Equal(got, tc.want) {
					t.Fatalf("matchers\n got %+v\nwant %+v", got, tc.want)
				}
				if d < MinSilenceDuration || d > MaxSilenceDuration {
					t.Fatalf("duration %s", d)
				}
				return
			}
			var he *httpapi.Error
			if !errors.As(err, &he) || he.Status != 400 || he.Field != tc.field {
				t.Fatalf("got %v (%+v), want a 400 naming %q", err, he, tc.field)
			}
		})
	}
}

func manyLabels(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m["l"+strings.Repeat("x", i)] = "v"
	}
	return m
}

// TestAmSilenceProject: only a silence with exactly one equality matcher on
// the project label belongs to a project; one made outside ecp (a regex on
// project, two project matchers, none) belongs to none, so no tenant sees
// or expires it.
func TestAmSilenceProject(t *testing.T) {
	for _, tc := range []struct {
		ms   []Matcher
		want string
	}{
		{[]Matcher{{Name: "project", Value: "p1", IsEqual: true}, {Name: "cluster", Value: "c1", IsEqual: true}}, "p1"},
		{[]Matcher{{Name: "project", Value: "p1|p2", IsRegex: true, IsEqual: true}}, ""},
		{[]Matcher{{Name: "project", Value: "p1", IsEqual: false}}, ""},
		{[]Matcher{{Name: "project", Value: "p1", IsEqual: true}, {Name: "project", Value: "p2", IsEqual: true}}, ""},
		{[]Matcher{{Name: "cluster", Value: "c1", IsEqual: true}}, ""},
	} {
		if got := (amSilence{Matchers: tc.ms}).project(); got != tc.want {
			b, _ := json.Marshal(tc.ms)
			t.Errorf("project of %s = %q, want %q", b, got, tc.want)
		}
	}
}

// TestSilencedAlertDoesNotGoStale: a silence stops Alertmanager's hourly
// repeats to ecp too, so an alert silenced for longer than StaleAfter went
// to history as stale though it still fired; one Alertmanager still holds
// stays active, and one it no longer holds goes stale as before.
func TestSilencedAlertDoesNotGoStale(t *testing.T) {
	w := newWorld(t, etcdtest.Client(t))
	am := newFake(t)
	clk := &clock{t: t0}
	a := newService(t, w, Options{Now: clk.now, StaleAfter: 3 * time.Hour})
	a.svc.opts.AlertmanagerURL = am.URL
	p := w.project.ID
	silenced, lost := connectorAlert(p, t0), connectorAlert(p, t0)
	lost.Fingerprint = "fp-lost"
	a.notify("firing", silenced, lost)
	am.hold(fmt.Appendf(nil, `[{"fingerprint":%q,"startsAt":%q,"labels":{"project":%q},"status":{"state":"suppressed","silencedBy":["s1"]}}]`,
		silenced.Fingerprint, t0.Format(time.RFC3339Nano), p))
	clk.add(4 * time.Hour)
	if err := a.svc.sweepStale(t.Context()); err != nil {
		t.Fatal(err)
	}
	active, hist := a.list(p, "state=active"), a.list(p, "state=history")
	if len(active) != 1 || active[0].Fingerprint != silenced.Fingerprint || !slices.Equal(active[0].SilencedBy, []string{"s1"}) {
		t.Fatalf("active %+v, want the silenced alert, with its silence", active)
	}
	if len(hist) != 1 || hist[0].Fingerprint != "fp-lost" || hist[0].EndReason != EndStale {
		t.Fatalf("history %+v, want the alert Alertmanager dropped, stale", hist)
	}
}
