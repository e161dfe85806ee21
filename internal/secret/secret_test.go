package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestStringNeverPrintsItsValue(t *testing.T) {
	const value = "hunter2-very-secret"
	s := String(value)
	type wrapper struct {
		Password String `json:"password"`
	}
	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("login", "password", s)
	js, err := json.Marshal(wrapper{Password: s})
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"%v":   fmt.Sprintf("%v", s),
		"%s":   fmt.Sprintf("%s", s), //nolint:staticcheck // the %s verb itself is under test
		"%+v":  fmt.Sprintf("%+v", wrapper{s}),
		"%#v":  fmt.Sprintf("%#v", wrapper{s}),
		"json": string(js),
		"slog": logBuf.String(),
	} {
		t.Run(name, func(t *testing.T) {
			if strings.Contains(out, value) {
				t.Fatalf("secret leaked: %s", out)
			}
			if !strings.Contains(out, Redacted) && !strings.Contains(out, `\u003csecret\u003e`) {
				t.Fatalf("want %q in %s", Redacted, out)
			}
		})
	}
	if s.Reveal() != value {
		t.Fatalf("Reveal() = %q, want %q", s.Reveal(), value)
	}
}

func TestStringUnmarshalsFromJSON(t *testing.T) {
	var w struct {
		Password String `json:"password"`
	}
	if err := json.Unmarshal([]byte(`{"password":"p@ss"}`), &w); err != nil {
		t.Fatal(err)
	}
	if w.Password.Reveal() != "p@ss" {
		t.Fatalf("got %q", w.Password.Reveal())
	}
}
