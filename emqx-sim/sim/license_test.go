package sim

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

func TestLicenseSetting(t *testing.T) {
	type step struct {
		body           string
		status         int
		wantMax        int // /license max_connections after the step
		wantDynamic    any // /license/setting dynamic_max_connections (nil = absent)
		wantSessionKey bool
	}
	cases := []struct {
		name     string
		opts     Options
		steps    []step
		sessions bool
	}{
		{"business critical 5.8.9", Options{LicenseCustomerType: 3, LicenseType: 1, LicenseMaxSessions: 5000}, []step{
			{"", 200, 25, 25.0, true},
			{`{"dynamic_max_connections": 1000}`, 200, 1000, 1000.0, true},
			{`{"dynamic_max_connections": 99999}`, 200, 5000, 99999.0, true},
			{`{"dynamic_max_connections": -1}`, 400, 5000, 99999.0, true},
			{`{"connection_low_watermark": "85%"}`, 400, 5000, 99999.0, true},
			{`{"connection_low_watermark": "60%", "connection_high_watermark": "70%"}`, 200, 5000, 99999.0, true},
			{`{"connection_high_watermark": "seventy"}`, 400, 5000, 99999.0, true},
		}, true},
		{"small customer drops dynamic", Options{LicenseCustomerType: 0, LicenseType: 1, LicenseMaxSessions: 300}, []step{
			{"", 200, 300, nil, true},
			{`{"dynamic_max_connections": 10}`, 200, 300, nil, true},
		}, true},
		{"5.7 has no max_sessions", Options{Version: "5.7.2", LicenseCustomerType: 3, LicenseType: 1, LicenseMaxSessions: 300}, []step{
			{`{"dynamic_max_connections": 40}`, 200, 40, 40.0, false},
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := start(t, c.opts)
			tok := f.admin(t)
			for i, st := range c.steps {
				if st.body != "" {
					r := f.req(t, http.MethodPut, "/api/v5/license/setting", tok, st.body)
					if st.status != 200 {
						wantError(t, r, st.status, "BAD_REQUEST", "Bad license setting")
					} else if r.status != 200 {
						t.Fatalf("step %d: PUT %s: %d %s", i, st.body, r.status, r.body)
					}
				}
				lic := f.req(t, http.MethodGet, "/api/v5/license", tok, "").object(t)
				if lic["max_connections"] != float64(st.wantMax) {
					t.Fatalf("step %d: max_connections = %v, want %d", i, lic["max_connections"], st.wantMax)
				}
				if ms, ok := lic["max_sessions"]; ok != st.wantSessionKey || (ok && ms != float64(st.wantMax)) {
					t.Fatalf("step %d: max_sessions = %v (present %v)", i, ms, ok)
				}
				set := f.req(t, http.MethodGet, "/api/v5/license/setting", tok, "").object(t)
				if set["dynamic_max_connections"] != st.wantDynamic {
					t.Fatalf("step %d: setting %v, want dynamic %v", i, set, st.wantDynamic)
				}
			}
		})
	}
}

func TestLicenseUpload(t *testing.T) {
	f := start(t, Options{Version: "5.8.9"})
	tok := f.admin(t)
	key := EncodeLicenseKey(License{Type: 1, CustomerType: 1, Customer: "Acme", Email: "a@acme.io", Deployment: "prod",
		Start: date(2026, 1, 1), Days: 30, MaxSessions: 777})
	cases := []struct {
		name, body string
		status     int
		msg        string
		customer   string
		max        float64
	}{
		{"key", `{"key":"` + key + `"}`, 200, "", "Acme", 777},
		{"default", `{"key":"default"}`, 200, "", "Evaluation", 25},
		{"garbage", `{"key":"xyz"}`, 400, "Bad license key", "", 0},
		{"missing key", `{}`, 400, "Invalid request params", "", 0},
		{"not json", `key=1`, 400, "Invalid json message received", "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := f.req(t, http.MethodPost, "/api/v5/license", tok, c.body)
			if c.status != 200 {
				wantError(t, r, c.status, "BAD_REQUEST", c.msg)
				return
			}
			m := r.object(t)
			if r.status != 200 || m["customer"] != c.customer || m["max_connections"] != c.max {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
	// Expired: 30 days from 2026-01-01 are over on the test clock (2026-03-14).
	_ = f.req(t, http.MethodPost, "/api/v5/license", tok, `{"key":"`+key+`"}`)
	if m := f.req(t, "GET", "/api/v5/license", tok, "").object(t); m["expiry"] != true || m["expiry_at"] != "2026-01-31" {
		t.Fatalf("expired licence: %v", m)
	}
	if m := f.req(t, "GET", "/api/v5/monitor_current", tok, "").object(t); m["license_quota"] != "expired" {
		t.Fatalf("license_quota = %v, want expired", m["license_quota"])
	}
}

// TestConnectionsCappedByLicence drives the model and checks EMQX's cap
// (§6.4) holds, that raising dynamic_max_connections lets clients in, and
// that ResetLicense brings the default back.
func TestConnectionsCappedByLicence(t *testing.T) {
	for _, c := range []struct {
		version                string
		capAt25                int
		dynamic                int
		wantCapAfter, wantFull int
	}{
		{"5.8.9", 25, 20, 20, 25},    // lowering kicks nobody: 25 sessions stay
		{"5.8.9", 25, 200, 220, 220}, // > 25: round(limit*1.1)
		{"5.7.2", 27, 200, 220, 220}, // floor(limit*1.1), live clients
	} {
		t.Run(c.version+"/"+strconv.Itoa(c.dynamic), func(t *testing.T) {
			f := start(t, Options{Version: c.version, Nodes: 3, ClientsPerNode: 150, LogDir: t.TempDir()})
			tok := f.admin(t)
			for range 30 {
				f.clock.Advance(time.Second)
				f.sim.Step()
				if st := f.sim.State(); st.LicenseCount > st.ConnectionCap || st.ConnectionCap != c.capAt25 {
					t.Fatalf("count %d over cap %d", st.LicenseCount, st.ConnectionCap)
				}
			}
			if st := f.sim.State(); st.LicenseCount != c.capAt25 {
				t.Fatalf("demand 450 against limit 25: count %d, want %d", st.LicenseCount, c.capAt25)
			}
			r := f.req(t, http.MethodPut, "/api/v5/license/setting", tok, `{"dynamic_max_connections": `+strconv.Itoa(c.dynamic)+`}`)
			if r.status != 200 {
				t.Fatalf("PUT: %d %s", r.status, r.body)
			}
			for range 60 {
				f.clock.Advance(time.Second)
				f.sim.Step()
			}
			st := f.sim.State()
			if st.ConnectionCap != c.wantCapAfter || st.LicenseCount != c.wantFull {
				t.Fatalf("after the change: %+v, want cap %d count %d", st, c.wantCapAfter, c.wantFull)
			}
			nodes := f.req(t, "GET", "/api/v5/nodes", tok, "").json(t).([]any)
			sum := 0.0
			for _, n := range nodes {
				key := "connections"
				if c.version == "5.7.2" {
					key = "live_connections"
				}
				sum += n.(map[string]any)[key].(float64)
			}
			if int(sum) != c.wantFull {
				t.Fatalf("sum over /nodes = %v, want %d", sum, c.wantFull)
			}
			f.sim.ResetLicense()
			if got := f.req(t, "GET", "/api/v5/license/setting", tok, "").object(t)["dynamic_max_connections"]; got != 25.0 {
				t.Fatalf("after reset dynamic = %v, want 25", got)
			}
		})
	}
}
