package sim

import "net/http"

// ---- /prometheus/auth (emqx-api.md §7.3) ----

// authBackend is an authenticator (label id, "mechanism:backend") or an
// authorization source (label type). The simulated cluster has EMQX's
// built-in ones, which need no outside service and so are always
// connected.
type authBackend struct {
	authz bool
	id    string
}

var authBackends = []authBackend{
	{id: "password_based:built_in_database"},
	{authz: true, id: "file"},
	{authz: true, id: "built_in_database"},
}

// promAuth serves the enable and status gauges of every backend (1 and 1)
// in the Prometheus text format, per node in all_nodes_unaggregated. The
// counters EMQX adds there are left out: the agent reads only these.
func (s *Sim) promAuth(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
	mode := promMode(r)
	s.mu.Lock()
	nodes := s.promNodes(mode)
	s.mu.Unlock()
	var fams []*promFamily
	for _, name := range []string{"emqx_authn_enable", "emqx_authn_status", "emqx_authz_enable", "emqx_authz_status"} {
		f := &promFamily{name: name, typ: "gauge"}
		authz, label := name[:len("emqx_authz")] == "emqx_authz", "id"
		if authz {
			label = "type"
		}
		for _, b := range authBackends {
			if b.authz != authz || len(nodes) == 0 {
				continue
			}
			if mode != modeUnaggregated {
				f.samples = append(f.samples, promSample{id: b.id, label: label, value: 1})
				continue
			}
			for _, n := range nodes {
				f.samples = append(f.samples, promSample{node: n.name, id: b.id, label: label, value: 1})
			}
		}
		fams = append(fams, f)
	}
	writePromText(w, fams)
}
