package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRunExitCodes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"version", []string{"version"}, exitOK, "ecp "},
		{"help", []string{"--help"}, exitOK, "serve"},
		{"serve help lists every flag", []string{"serve", "--help"}, exitOK, "--licence.max-per-cluster"},
		{"no command", nil, exitUsage, "usage: ecp"},
		{"unknown flag", []string{"serve", "--nope"}, exitUsage, "unknown long flag"},
		{"bad log level", []string{"serve", "--log.level", "loud"}, exitUsage, "--log.level must be one of"},
		{"bad licence", []string{"serve", "--licence.total-connections", "5", "--licence.max-per-cluster", "6"}, exitUsage, "--licence.max-per-cluster must be from 1"},
		{"bad external url", []string{"serve", "--web.external-url", "ecp.example:8080"}, exitUsage, "--web.external-url"},
		{"bad format", []string{"serve", "--log.format", "xml"}, exitUsage, "--log.format"},
		{"bad report interval", []string{"serve", "--agent.report-interval", "500ms"}, exitUsage, "--agent.report-interval"},
		{"bad ttl", []string{"serve", "--registration.token-ttl", "0s"}, exitUsage, "--registration.token-ttl"},
		{"negative max connections", []string{"serve", "--web.max-connections=-1"}, exitUsage, "--web.max-connections must not be negative"},
		{"rules dir without alertmanager file", []string{"serve", "--prometheus.rules-dir", "/tmp/r"}, exitUsage, "--alertmanager.config-file"},
		{"prometheus url without rules dir", []string{"serve", "--prometheus.url", "http://127.0.0.1:9090"}, exitUsage, "--prometheus.url needs --prometheus.rules-dir"},
		{"smtp host without sender", []string{"serve", "--smtp.smarthost", "127.0.0.1:25"}, exitUsage, "--smtp.from"},
		{"short history", []string{"serve", "--alerts.history-retention", "1m"}, exitUsage, "--alerts.history-retention"},
		{"missing smtp password file", []string{"serve", "--smtp.auth-password-file", "/nonexistent/pw"}, exitUsage, "--smtp.auth-password-file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != tc.code {
				t.Fatalf("run(%v) = %d, want %d\nstdout: %s\nstderr: %s", tc.args, code, tc.code, stdout.String(), stderr.String())
			}
			if all := stdout.String() + stderr.String(); !strings.Contains(all, tc.out) {
				t.Fatalf("output lacks %q:\n%s", tc.out, all)
			}
		})
	}
}
