package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ecpio/ecp/agentproto"
)

// Config is the optional configuration file. Every field is optional; a
// field that is set overrides the flag (a collectInterval pins the
// interval, as the flag does). Unknown fields are errors. Its keys are
// camelCase, like ecp's configuration file and API.
//
//	collectInterval: 15s
//	logLevel: info
type Config struct {
	CollectInterval string `yaml:"collectInterval"`
	LogLevel        string `yaml:"logLevel"`
}

// file is what a configuration file may hold: Config's keys, and the
// snake_case spellings documented before both binaries' files took one
// key style, still accepted so that files written then keep working.
type file struct {
	Config          `yaml:",inline"`
	CollectInterval string `yaml:"collect_interval"`
	LogLevel        string `yaml:"log_level"`
}

// config folds the old spellings into Config; a key given both ways is
// an error, since the two could disagree.
func (f file) config() (Config, error) {
	c := f.Config
	for _, k := range []struct {
		name, old string
		val       *string
		oldVal    string
	}{
		{"collectInterval", "collect_interval", &c.CollectInterval, f.CollectInterval},
		{"logLevel", "log_level", &c.LogLevel, f.LogLevel},
	} {
		if k.oldVal == "" {
			continue
		}
		if *k.val != "" {
			return Config{}, fmt.Errorf("%s and %s are the same setting: keep %s", k.name, k.old, k.name)
		}
		*k.val = k.oldVal
	}
	return c, nil
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
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("parsing config file %s: %w", path, err)
	}
	c, err := f.config()
	if err != nil {
		return Config{}, fmt.Errorf("config file %s: %w", path, err)
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
			return r, fmt.Errorf("collectInterval %q: want a duration from %s to %s, such as 15s", c.CollectInterval, agentproto.MinAgentInterval, agentproto.MaxAgentInterval)
		}
		r.interval = d
	}
	if c.LogLevel != "" {
		var l slog.Level
		if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
			return r, fmt.Errorf("logLevel %q: want debug, info, warn or error", c.LogLevel)
		}
		r.level = &l
	}
	return r, nil
}
