package daemon_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ecpio/ecp/agent-exporter/daemon"
)

// TestConfigKeyStyles: the configuration file takes camelCase keys, like
// ecp's, and still reads the snake_case keys documented before.
func TestConfigKeyStyles(t *testing.T) {
	tests := []struct {
		name, file string
		want       daemon.Config
		err        string
	}{
		{"camelCase", "collectInterval: 30s\nlogLevel: debug\n", daemon.Config{CollectInterval: "30s", LogLevel: "debug"}, ""},
		{"snake_case, as documented before", "collect_interval: 30s\nlog_level: debug\n", daemon.Config{CollectInterval: "30s", LogLevel: "debug"}, ""},
		{"empty file", "", daemon.Config{}, ""},
		{"both spellings", "collectInterval: 30s\ncollect_interval: 1m\n", daemon.Config{}, "collectInterval and collect_interval are the same setting"},
		{"unknown key", "collectIntervall: 30s\n", daemon.Config{}, "field collectIntervall not found"},
		{"bad value names the key", "collectInterval: fast\n", daemon.Config{}, `collectInterval "fast"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "agent.yml")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := daemon.LoadConfig(path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("LoadConfig = %+v, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("LoadConfig = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
