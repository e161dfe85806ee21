package registry

import (
	"strings"
	"testing"

	"github.com/ecpio/ecp/agentproto"
)

func TestEffectiveLogCollection(t *testing.T) {
	on, off := &LogCollectionSpec{Enabled: true}, &LogCollectionSpec{Enabled: false}
	withDir := func(enabled bool) agentproto.LogCollection {
		return agentproto.LogCollection{Enabled: enabled, Dir: "/opt/emqx/log"}
	}
	tests := []struct {
		name       string
		set        *LogCollectionSpec
		registered agentproto.LogCollection
		want       agentproto.LogCollection
	}{
		{"no switch keeps on", nil, withDir(true), withDir(true)},
		{"no switch keeps off", nil, withDir(false), withDir(false)},
		{"no switch, nothing registered", nil, agentproto.LogCollection{}, agentproto.LogCollection{}},
		{"switched off", off, withDir(true), withDir(false)},
		{"switched on", on, withDir(false), withDir(true)},
		{"switched on without a directory stays off", on, agentproto.LogCollection{}, agentproto.LogCollection{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Spec{ID: "c1", LogCollection: tt.set}
			if got := s.EffectiveLogCollection(tt.registered); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestLogCollectionRoundTrip: the switch survives storage, and an entry
// without one stores no field (older entries decode as "as registered").
func TestLogCollectionRoundTrip(t *testing.T) {
	for _, set := range []*LogCollectionSpec{nil, {Enabled: false}, {Enabled: true}} {
		b, err := Spec{ID: "c1", LogCollection: set}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case set == nil && (got.LogCollection != nil || strings.Contains(string(b), "logCollection")):
			t.Fatalf("no switch stored as %s", b)
		case set != nil && (got.LogCollection == nil || *got.LogCollection != *set):
			t.Fatalf("switch %+v came back as %+v from %s", *set, got.LogCollection, b)
		}
	}
}
