package logstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestReceiverConfigValidate(t *testing.T) {
	ok := ReceiverConfig{Type: TypeElasticsearch, URL: "https://es.example:9200", Username: "ecp", Password: "pw", IndexPrefix: "ecp-logs"}
	tests := []struct {
		name      string
		edit      func(c *ReceiverConfig)
		wantField string
	}{
		{"valid", func(*ReceiverConfig) {}, ""},
		{"victorialogs with path prefix", func(c *ReceiverConfig) { c.Type = TypeVictoriaLogs; c.URL = "http://127.0.0.1:9428/vl/" }, ""},
		{"no auth", func(c *ReceiverConfig) { c.Username, c.Password = "", "" }, ""},
		{"missing type", func(c *ReceiverConfig) { c.Type = "" }, "type"},
		{"unknown type", func(c *ReceiverConfig) { c.Type = "loki" }, "type"},
		{"missing url", func(c *ReceiverConfig) { c.URL = "" }, "url"},
		{"url scheme", func(c *ReceiverConfig) { c.URL = "ftp://es" }, "url"},
		{"url without host", func(c *ReceiverConfig) { c.URL = "http://" }, "url"},
		{"url with credentials", func(c *ReceiverConfig) { c.URL = "http://u:p@es:9200" }, "url"},
		{"url with query", func(c *ReceiverConfig) { c.URL = "http://es:9200?x=1" }, "url"},
		{"password without user", func(c *ReceiverConfig) { c.Username = "" }, "username"},
		{"colon in user", func(c *ReceiverConfig) { c.Username = "a:b" }, "username"},
		{"uppercase prefix", func(c *ReceiverConfig) { c.IndexPrefix = "Logs" }, "indexPrefix"},
		{"prefix with star", func(c *ReceiverConfig) { c.IndexPrefix = "logs*" }, "indexPrefix"},
		{"prefix starting with _", func(c *ReceiverConfig) { c.IndexPrefix = "_logs" }, "indexPrefix"},
		{"prefix ignored for victorialogs", func(c *ReceiverConfig) { c.Type = TypeVictoriaLogs; c.IndexPrefix = "Whatever*" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			err := c.Validate()
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			fe, isField := errors.AsType[*FieldError](err)
			if !isField || fe.Field != tt.wantField || fe.Message == "" {
				t.Fatalf("err %v, want a FieldError on %s", err, tt.wantField)
			}
		})
	}
}

func TestReceiverConfigNeverShowsThePassword(t *testing.T) {
	const pw = "correct-horse-battery"
	c := ReceiverConfig{Type: TypeElasticsearch, URL: "https://es:9200", Username: "ecp", Password: pw}
	api, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("receiver", "config", c)
	for name, out := range map[string]string{
		"api json": string(api),
		"%v":       fmt.Sprintf("%v", c),
		"%+v":      fmt.Sprintf("%+v", c),
		"%#v":      fmt.Sprintf("%#v", c),
		"slog":     logBuf.String(),
	} {
		t.Run(name, func(t *testing.T) {
			if strings.Contains(out, pw) {
				t.Fatalf("password leaked: %s", out)
			}
		})
	}
	var view map[string]any
	if err := json.Unmarshal(api, &view); err != nil {
		t.Fatal(err)
	}
	if _, has := view["password"]; has || view["passwordSet"] != true || view["type"] != "elasticsearch" || view["insecureSkipVerify"] != false {
		t.Fatalf("api view %s", api)
	}
}

func TestReceiverConfigJSONRoundTrips(t *testing.T) {
	in := `{"type":"victorialogs","url":"http://127.0.0.1:9428","username":"u","password":"pw","indexPrefix":"x","insecureSkipVerify":true}`
	var c ReceiverConfig
	if err := json.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	if c.Type != TypeVictoriaLogs || c.Password.Reveal() != "pw" || !c.InsecureSkipVerify || c.IndexPrefix != "x" {
		t.Fatalf("decoded %+v", c)
	}
	stored, err := c.MarshalStored()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalStored(stored)
	if err != nil || back != c {
		t.Fatalf("stored round trip %+v, %v", back, err)
	}
}

func TestKeepPassword(t *testing.T) {
	prev := ReceiverConfig{Type: TypeElasticsearch, URL: "https://es:9200", Username: "ecp", Password: "old"}
	tests := []struct {
		name string
		next ReceiverConfig
		want string
	}{
		{"echo of GET keeps it", ReceiverConfig{Type: TypeElasticsearch, URL: "https://es:9200", Username: "ecp", IndexPrefix: "n"}, "old"},
		{"new password wins", ReceiverConfig{Type: TypeElasticsearch, URL: "https://es:9200", Username: "ecp", Password: "new"}, "new"},
		{"other URL drops it", ReceiverConfig{Type: TypeElasticsearch, URL: "https://evil:9200", Username: "ecp"}, ""},
		{"other user drops it", ReceiverConfig{Type: TypeElasticsearch, URL: "https://es:9200", Username: "admin"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.next.KeepPassword(prev).Password.Reveal(); got != tt.want {
				t.Fatalf("password %q, want %q", got, tt.want)
			}
		})
	}
}
