package sim

import (
	"fmt"
	"strconv"
	"strings"
)

// release is an EMQX release number such as 5.8.9, parsed once so that every
// version-dependent behaviour (emqx-api.md §11) is a plain comparison.
type release struct {
	major, minor, patch int
}

func parseRelease(s string) (release, error) {
	s = strings.TrimLeft(s, "ev")
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return release{}, fmt.Errorf("parse version %q: want MAJOR.MINOR.PATCH", s)
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return release{}, fmt.Errorf("parse version %q: %q is not a number", s, p)
		}
		n[i] = v
	}
	r := release{n[0], n[1], n[2]}
	if !r.atLeast(5, 7, 0) || r.major != 5 {
		return release{}, fmt.Errorf("parse version %q: the simulator serves EMQX 5.7.0 to 5.x", s)
	}
	return r, nil
}

func (r release) String() string { return fmt.Sprintf("%d.%d.%d", r.major, r.minor, r.patch) }

func (r release) atLeast(major, minor, patch int) bool {
	if r.major != major {
		return r.major > major
	}
	if r.minor != minor {
		return r.minor > minor
	}
	return r.patch >= patch
}

// Feature switches, named after what changed (emqx-api.md §11).

// connectorSources: connectors list `sources` from 5.8.0.
func (r release) connectorSources() bool { return r.atLeast(5, 8, 0) }

// ruleActionsDiscarded: rule metric actions.discarded from 5.8.1.
func (r release) ruleActionsDiscarded() bool { return r.atLeast(5, 8, 1) }

// queuingBytes: action metric queuing_bytes from 5.8.2.
func (r release) queuingBytes() bool { return r.atLeast(5, 8, 2) }

// countsSessions: from 5.8.5 the licence counts sessions, /license has
// max_sessions, rules carry last_modified_at, actions created_at and
// last_modified_at, and /actions_summary exists.
func (r release) countsSessions() bool { return r.atLeast(5, 8, 5) }

// ee59: 5.9.0 and later (EE only): rules action_details, login mfa_token,
// monitor_current cluster_sessions, /status json cluster, community default licence.
func (r release) ee59() bool { return r.atLeast(5, 9, 0) }

// monitorRuleRates: monitor rules_matched_rate / actions_executed_rate from 5.10.3.
func (r release) monitorRuleRates() bool { return r.atLeast(5, 10, 3) }

// promLicenseMax: Prometheus emqx_license_max_sessions and issued_at, routes
// gauges, and /status json without rel_vsn, from 5.10.4.
func (r release) promLicenseMax() bool { return r.atLeast(5, 10, 4) }
