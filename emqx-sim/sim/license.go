package sim

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// License is the content of an EMQX licence key (emqx-api.md §6.2).
type License struct {
	Type         int // 0 trial, 1 official, 2 community (5.9+)
	CustomerType int // 3 business critical, 10 evaluation, 11 developer...
	Customer     string
	Email        string
	Deployment   string
	Start        time.Time // date, UTC
	Days         int
	MaxSessions  int
}

type license = License

type licenseSetting struct {
	low, high string // percent strings, e.g. "75%"
	dynamic   int    // dynamic_max_connections
}

const licenseKeyVersion = "220111"

// EncodeLicenseKey renders l as an EMQX licence key: base64 of the payload
// lines, a dot, and a base64 signature. The simulator, like an emulator may,
// checks the shape but not the signature, so tests can mint keys freely.
func EncodeLicenseKey(l License) string {
	payload := strings.Join([]string{
		licenseKeyVersion,
		strconv.Itoa(l.Type),
		strconv.Itoa(l.CustomerType),
		l.Customer,
		l.Email,
		l.Deployment,
		l.Start.UTC().Format("20060102"),
		strconv.Itoa(l.Days),
		strconv.Itoa(l.MaxSessions),
	}, "\n")
	return base64.StdEncoding.EncodeToString([]byte(payload)) + "." +
		base64.StdEncoding.EncodeToString([]byte("emqx-sim-unsigned"))
}

var errBadKey = errors.New("bad license key")

func parseLicenseKey(key string) (License, error) {
	payloadB64, sigB64, ok := strings.Cut(key, ".")
	if !ok {
		return License{}, errBadKey
	}
	payload, err := base64.StdEncoding.DecodeString(payloadB64)
	if err != nil {
		return License{}, errBadKey
	}
	if _, err := base64.StdEncoding.DecodeString(sigB64); err != nil || sigB64 == "" {
		return License{}, errBadKey
	}
	lines := strings.Split(string(payload), "\n")
	if len(lines) < 9 || lines[0] != licenseKeyVersion {
		return License{}, errBadKey
	}
	ints := make([]int, 0, 4)
	for _, i := range []int{1, 2, 7, 8} {
		v, err := strconv.Atoi(strings.TrimSpace(lines[i]))
		if err != nil || v < 0 {
			return License{}, errBadKey
		}
		ints = append(ints, v)
	}
	start, err := time.Parse("20060102", strings.TrimSpace(lines[6]))
	if err != nil {
		return License{}, errBadKey
	}
	return License{
		Type: ints[0], CustomerType: ints[1], Customer: lines[3], Email: lines[4], Deployment: lines[5],
		Start: start, Days: ints[2], MaxSessions: ints[3],
	}, nil
}

// defaultLicense is the built-in licence a "default" key reloads:
// the evaluation licence before 5.9, the community licence from 5.9.
func (s *Sim) defaultLicense() License {
	if s.rel.ee59() {
		return License{Type: 2, CustomerType: 11, Customer: "Developer", Email: "contact@emqx.io",
			Deployment: "Development", Start: date(2025, 3, 2), Days: 1460, MaxSessions: 10000000}
	}
	return s.evaluationLicense()
}

func (s *Sim) evaluationLicense() License {
	return License{Type: 0, CustomerType: 10, Customer: "Evaluation", Email: "contact@emqx.io",
		Deployment: "trial", Start: date(2024, 4, 18), Days: 1825, MaxSessions: 25}
}

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func (s *Sim) initLicense(now time.Time) {
	start := now.UTC().AddDate(0, -1, 0)
	s.initLic = License{
		Type:         s.opts.LicenseType,
		CustomerType: s.opts.LicenseCustomerType,
		Customer:     "ecp-sim",
		Email:        "ops@example.com",
		Deployment:   "ecp-managed",
		Start:        time.Date(start.Year(), start.Month(), start.Day(), 0, 0, 0, 0, time.UTC),
		Days:         365,
		MaxSessions:  s.opts.LicenseMaxSessions,
	}
	s.lic = s.initLic
	s.setting = licenseSetting{low: "75%", high: "80%", dynamic: DefaultDynamicMaxConnections}
}

func (l License) expiryAt() time.Time { return l.Start.AddDate(0, 0, l.Days) }

func (l License) typeName() string {
	switch l.Type {
	case 0:
		return "trial"
	case 2:
		return "community"
	default:
		return "official"
	}
}

// effectiveMax is the limit EMQX enforces: min(dynamic_max_connections, key
// max) for business-critical licences, the key max otherwise (§6.3).
func (s *Sim) effectiveMax() int {
	if s.lic.CustomerType == 3 {
		return min(s.setting.dynamic, s.lic.MaxSessions)
	}
	return s.lic.MaxSessions
}

func (s *Sim) licenseExpired(now time.Time) bool {
	today := now.UTC()
	return today.After(s.lic.expiryAt())
}

// licenseBody is GET /api/v5/license.
func (s *Sim) licenseBody(now time.Time) map[string]any {
	m := map[string]any{
		"customer":        s.lic.Customer,
		"email":           s.lic.Email,
		"deployment":      s.lic.Deployment,
		"max_connections": s.effectiveMax(),
		"start_at":        s.lic.Start.Format(time.DateOnly),
		"expiry_at":       s.lic.expiryAt().Format(time.DateOnly),
		"type":            s.lic.typeName(),
		"customer_type":   s.lic.CustomerType,
		"expiry":          s.licenseExpired(now),
	}
	if s.rel.countsSessions() {
		m["max_sessions"] = s.effectiveMax()
	}
	return m
}

// settingBody is GET /api/v5/license/setting.
func (s *Sim) settingBody() map[string]any {
	m := map[string]any{
		"connection_low_watermark":  s.setting.low,
		"connection_high_watermark": s.setting.high,
	}
	if s.lic.CustomerType == 3 {
		m["dynamic_max_connections"] = s.setting.dynamic
	}
	return m
}

// parsePercent reads EMQX's percent strings ("80%").
func parsePercent(v string) (float64, error) {
	num, ok := strings.CutSuffix(v, "%")
	if !ok {
		return 0, fmt.Errorf("%q is not a percent string", v)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || f > 100 {
		return 0, fmt.Errorf("%q is not a percent between 0%% and 100%%", v)
	}
	return f, nil
}
