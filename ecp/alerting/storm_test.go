package alerting

import (
	"errors"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ecpio/ecp/ecp/httpapi"
)

// TestStormThresholdValidation: left out (0) is the default; otherwise it
// is bounded, and a wrong one is a 400 naming stormThreshold.
func TestStormThresholdValidation(t *testing.T) {
	for _, tc := range []struct {
		threshold int
		ok        bool
	}{{0, true}, {MinStormThreshold, true}, {MaxStormThreshold, true}, {MinStormThreshold - 1, false}, {MaxStormThreshold + 1, false}, {-1, false}} {
		s := DefaultSettings()
		s.StormThreshold = tc.threshold
		err := s.Validate()
		var he *httpapi.Error
		switch {
		case tc.ok && err != nil:
			t.Errorf("stormThreshold %d refused: %v", tc.threshold, err)
		case !tc.ok && (!errors.As(err, &he) || he.Status != 400 || he.Field != "stormThreshold"):
			t.Errorf("stormThreshold %d: got %v, want a 400 naming stormThreshold", tc.threshold, err)
		}
	}
	if got := DefaultSettings().StormThreshold; got != DefaultStormThreshold {
		t.Errorf("new settings have stormThreshold %d, want %d", got, DefaultStormThreshold)
	}
}

// TestStormRoutesOnlyTheNotice: in a storm the project's route sends its
// alerts nowhere but the storm notice to the project's one-message
// receiver; the other projects and ecp's own route are as before.
func TestStormRoutesOnlyTheNotice(t *testing.T) {
	projects := testProjects()
	calm, err := RenderAlertmanager(projects, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	alpha := projects["alpha"]
	alpha.Storm = true
	projects["alpha"] = alpha
	b, err := RenderAlertmanager(projects, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	var f amFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	var calmFile amFile
	if err := yaml.Unmarshal(calm, &calmFile); err != nil {
		t.Fatal(err)
	}
	for i, r := range f.Route.Routes {
		if len(r.Matchers) == 0 || r.Matchers[0] != `project="alpha"` {
			if want := calmFile.Route.Routes[i]; r.Receiver != want.Receiver || len(r.Routes) != len(want.Routes) {
				t.Errorf("route %d changed in alpha's storm: %+v, was %+v", i, r, want)
			}
			continue
		}
		if r.Receiver != ReceiverNone {
			t.Errorf("alpha's route in a storm sends to %s, want %s", r.Receiver, ReceiverNone)
		}
		last := r.Routes[len(r.Routes)-1]
		if last.Receiver != ProjectReceiver("alpha")+receiverTestSuffix || strings.Join(last.Matchers, ",") != `alertname="ECPAlertStorm"` {
			t.Errorf("alpha's storm sub-route %+v, want the notice to the one-message receiver", last)
		}
	}
}
