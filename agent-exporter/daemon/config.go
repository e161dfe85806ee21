package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.yaml.in/yaml/v2"

	"github.com/ecpio/ecp/agentproto"
)

// Config is the optional configuration file. Every field is optional; a
// field that is set overrides the flag (a collect_interval pins the
// interval, as the flag does). Unknown fields are errors.
//
//	collect_interval: 15s
//	log_level: info
type Config struct {
	CollectInterval string `yaml:"collect_interval"`
	LogLevel        string `yaml:"log_level"`
}

// resolved is a checked Config.
type resolved struct {
	interval time.Duration
	level    *slog.Level
}

// LoadConfig reads and checks a configuration file.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading config file: %w", err)
	}
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return Config{}, fmt.Errorf("parsing config file %s: %w", path, err)
	}
	if _, err := c.resolve(); err != nil {
		return Config{}, fmt.Errorf("config file %s: %w", path, err)
	}
	return c, nil
}

func (c Config) resolve() (resolved, error) {
	var r resolved
	if c.CollectInterval != "" {
		d, err := time.ParseDuration(c.CollectInterval)
		if err != nil || d < agentproto.MinAgentInterval || d > agentproto.MaxAgentInterval {
			return r, fmt.Errorf("collect_interval %q: want a duration from %s to %s, such as 15s", c.CollectInterval, agentproto.MinAgentInterval, agentproto.MaxAgentInterval)
		}
		r.interval = d
	}
	if c.LogLevel != "" {
		var l slog.Level
		if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
			return r, fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel)
		}
		r.level = &l
	}
	return r, nil
}
