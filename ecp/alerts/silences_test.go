package alerts

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

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
