package sim

import (
	"errors"
	"net/http"
	"time"
)

// simRoutes registers the fault API under /sim/ (no auth). Replies: 204 on
// success, 404 NOT_FOUND for an unknown id, 400 BAD_REQUEST for a bad body.
func (s *Sim) simRoutes(rt *router) {
	post := func(pattern string, h handlerFunc) { rt.handle(http.MethodPost, pattern, authNone, h) }
	post("/sim/connectors/{id}/fail", func(w http.ResponseWriter, r *http.Request, _ principal, ps params) {
		var b struct {
			Reason string   `json:"reason"`
			Nodes  []string `json:"nodes"`
		}
		if readJSON(w, r, &b) {
			simReply(w, s.FailConnector(ps["id"], b.Reason, b.Nodes...))
		}
	})
	post("/sim/connectors/{id}/heal", func(w http.ResponseWriter, _ *http.Request, _ principal, ps params) {
		simReply(w, s.HealConnector(ps["id"]))
	})
	post("/sim/rules/{id}/fail", func(w http.ResponseWriter, r *http.Request, _ principal, ps params) {
		var b struct {
			Reason string `json:"reason"`
		}
		if readJSON(w, r, &b) {
			simReply(w, s.FailRule(ps["id"], b.Reason))
		}
	})
	post("/sim/rules/{id}/heal", func(w http.ResponseWriter, _ *http.Request, _ principal, ps params) {
		simReply(w, s.HealRule(ps["id"]))
	})
	post("/sim/nodes/{node}/stop", func(w http.ResponseWriter, _ *http.Request, _ principal, ps params) {
		simReply(w, s.StopNode(ps["node"]))
	})
	post("/sim/nodes/{node}/start", func(w http.ResponseWriter, _ *http.Request, _ principal, ps params) {
		simReply(w, s.StartNode(ps["node"]))
	})
	post("/sim/nodes/{node}/cpu", func(w http.ResponseWriter, r *http.Request, _ principal, ps params) {
		var b struct {
			Use *float64 `json:"use"`
		}
		if readJSON(w, r, &b) {
			simReply(w, s.SetNodeCPU(ps["node"], b.Use))
		}
	})
	post("/sim/clients", func(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
		var b struct {
			PerNode *int `json:"perNode"`
		}
		if readJSON(w, r, &b) {
			if b.PerNode == nil {
				writeError(w, http.StatusBadRequest, "BAD_REQUEST", "perNode is required")
				return
			}
			simReply(w, s.SetClientsPerNode(*b.PerNode))
		}
	})
	// Paths as EMQX names the backends: /authentication/{id} and
	// /authorization/sources/{type}.
	authFault := func(authz bool, pattern string) {
		post(pattern+"/fail", func(w http.ResponseWriter, r *http.Request, _ principal, ps params) {
			var b struct {
				Nodes []string `json:"nodes"`
			}
			if readJSON(w, r, &b) {
				simReply(w, s.FailAuthBackend(authz, ps["id"], b.Nodes...))
			}
		})
		post(pattern+"/heal", func(w http.ResponseWriter, _ *http.Request, _ principal, ps params) {
			simReply(w, s.HealAuthBackend(authz, ps["id"]))
		})
	}
	authFault(false, "/sim/authentication/{id}")
	authFault(true, "/sim/authorization/sources/{id}")
	post("/sim/alarms/{name}/raise", func(w http.ResponseWriter, r *http.Request, _ principal, ps params) {
		var b struct {
			Node    string         `json:"node"`
			Message string         `json:"message"`
			Details map[string]any `json:"details"`
		}
		if readJSON(w, r, &b) {
			simReply(w, s.RaiseAlarm(b.Node, ps["name"], b.Message, b.Details))
		}
	})
	post("/sim/alarms/{name}/clear", func(w http.ResponseWriter, r *http.Request, _ principal, ps params) {
		var b struct {
			Node string `json:"node"`
		}
		if readJSON(w, r, &b) {
			simReply(w, s.ClearAlarm(b.Node, ps["name"]))
		}
	})
	post("/sim/license/reset", func(w http.ResponseWriter, _ *http.Request, _ principal, _ params) {
		s.ResetLicense()
		simReply(w, nil)
	})
	post("/sim/api/fault", func(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
		var b struct {
			LatencyMs int64   `json:"latencyMs"`
			ErrorRate float64 `json:"errorRate"`
			Status    int     `json:"status"`
		}
		if readJSON(w, r, &b) {
			simReply(w, s.SetAPIFault(APIFault{Latency: time.Duration(b.LatencyMs) * time.Millisecond, ErrorRate: b.ErrorRate, Status: b.Status}))
		}
	})
	post("/sim/login/refuse", func(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
		var b struct {
			Code string `json:"code"`
		}
		if readJSON(w, r, &b) {
			if b.Code == "" {
				b.Code = "BAD_USERNAME_OR_PWD"
			}
			simReply(w, s.RefuseLogin(b.Code))
		}
	})
	post("/sim/login/accept", func(w http.ResponseWriter, _ *http.Request, _ principal, _ params) {
		simReply(w, s.RefuseLogin(""))
	})
	post("/sim/tokens/expire", func(w http.ResponseWriter, _ *http.Request, _ principal, _ params) {
		s.ExpireTokens()
		simReply(w, nil)
	})
	post("/sim/step", func(w http.ResponseWriter, _ *http.Request, _ principal, _ params) {
		s.Step()
		simReply(w, nil)
	})
	post("/sim/logs/write", func(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
		var b struct {
			Lines int `json:"lines"`
		}
		if readJSON(w, r, &b) {
			if b.Lines < 0 || b.Lines > 10_000_000 {
				writeError(w, http.StatusBadRequest, "BAD_REQUEST", "lines must be 0..10000000")
				return
			}
			simReply(w, s.WriteLogs(b.Lines))
		}
	})
	rt.handle(http.MethodGet, "/sim/state", authNone, func(w http.ResponseWriter, _ *http.Request, _ principal, _ params) {
		writeJSON(w, http.StatusOK, s.State())
	})
	rt.handle(http.MethodGet, "/sim/dashboard/entries", authNone, func(w http.ResponseWriter, _ *http.Request, _ principal, _ params) {
		writeJSON(w, http.StatusOK, s.DashboardEntries())
	})
	post("/sim/dashboard/entries", s.postDashboardEntry)
}

func simReply(w http.ResponseWriter, err error) {
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, ErrUnknownConnector), errors.Is(err, ErrUnknownRule), errors.Is(err, ErrUnknownNode),
		errors.Is(err, ErrUnknownAlarm), errors.Is(err, ErrUnknownAuthBackend):
		writeError(w, http.StatusNotFound, "NOT_FOUND", err.Error())
	default:
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
	}
}

// State is a summary of the simulated cluster for tests and the /sim/state
// endpoint.
type State struct {
	Version               string `json:"version"`
	NodesRunning          int    `json:"nodesRunning"`
	NodesStopped          int    `json:"nodesStopped"`
	Connections           int    `json:"connections"`     // sessions, summed over running nodes
	LiveConnections       int    `json:"liveConnections"` // connected clients
	LicenseCount          int    `json:"licenseCount"`    // what the licence counts (sessions from 5.8.5, live before)
	EffectiveMax          int    `json:"effectiveMax"`    // /license max_connections
	ConnectionCap         int    `json:"connectionCap"`   // highest count EMQX lets the cluster reach
	DynamicMaxConnections int    `json:"dynamicMaxConnections"`
	CustomerType          int    `json:"customerType"`
	LogLines              int64  `json:"logLines"`
	// APIPathConcurrencyMax is the most requests seen in flight at once
	// on one /api/v5 path since the last API fault change.
	APIPathConcurrencyMax int `json:"apiPathConcurrencyMax"`
}

// State returns the current summary.
func (s *Sim) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{
		Version: s.rel.String(), NodesRunning: s.runningCount(), NodesStopped: len(s.nodes) - s.runningCount(),
		LicenseCount: s.licenseCount(), EffectiveMax: s.effectiveMax(), ConnectionCap: s.connectionCap(),
		DynamicMaxConnections: s.setting.dynamic, CustomerType: s.lic.CustomerType,
		APIPathConcurrencyMax: s.apiPathMax,
	}
	for _, n := range s.runningNodes() {
		st.Connections += n.sessions
		st.LiveConnections += n.live
	}
	if s.logs != nil {
		st.LogLines = s.logs.lines
	}
	return st
}
