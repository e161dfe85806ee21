package sim

import (
	"errors"
	"fmt"
	"net/http"
)

// ---- /prometheus/auth (emqx-api.md §7.3) ----

// authBackend is an authenticator (label id, "mechanism:backend") or an
// authorization source (label type). The simulated cluster has EMQX's
// built-in ones, which need no outside service and so are connected unless
// a fault (FailAuthBackend) says otherwise, as a database backend that
// lost its server would be.
type authBackend struct {
	authz bool
	id    string
}

var authBackends = []authBackend{
	{id: "password_based:built_in_database"},
	{authz: true, id: "file"},
	{authz: true, id: "built_in_database"},
}

// ErrUnknownAuthBackend is the error of an auth fault on a backend the
// cluster does not have.
var ErrUnknownAuthBackend = errors.New("unknown authentication or authorization backend")

// FailAuthBackend makes an authenticator (authz false, id as
// "mechanism:backend") or an authorization source (authz true, id its type)
// enabled but not connected on the given nodes (every node when none are
// given): its emqx_authn_status or emqx_authz_status turns 0 there.
func (s *Sim) FailAuthBackend(authz bool, id string, nodes ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.authBackend(authz, id)
	if err != nil {
		return fmt.Errorf("fail auth backend: %w", err)
	}
	nodes, err = s.faultNodes(nodes)
	if err != nil {
		return fmt.Errorf("fail auth backend %q on %w", id, err)
	}
	if s.authDown[b] == nil {
		s.authDown[b] = map[string]bool{}
	}
	for _, name := range nodes {
		s.authDown[b][name] = true
	}
	return nil
}

// HealAuthBackend connects the backend again on every node.
func (s *Sim) HealAuthBackend(authz bool, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.authBackend(authz, id)
	if err != nil {
		return fmt.Errorf("heal auth backend: %w", err)
	}
	delete(s.authDown, b)
	return nil
}

// authBackend finds a backend; s.mu is held.
func (s *Sim) authBackend(authz bool, id string) (authBackend, error) {
	for _, b := range authBackends {
		if b.authz == authz && b.id == id {
			return b, nil
		}
	}
	return authBackend{}, fmt.Errorf("%q: %w", id, ErrUnknownAuthBackend)
}

// promAuth serves the enable and status gauges of every backend in the
// Prometheus text format, per node in all_nodes_unaggregated; aggregated,
// a status is 1 only when it is 1 on every node (a logical AND, as EMQX
// aggregates its status gauges). The counters EMQX adds there are left
// out: the agent reads only these.
func (s *Sim) promAuth(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
	mode := promMode(r)
	var fams []*promFamily
	s.mu.Lock()
	nodes := s.promNodes(mode)
	for _, name := range []string{"emqx_authn_enable", "emqx_authn_status", "emqx_authz_enable", "emqx_authz_status"} {
		f := &promFamily{name: name, typ: "gauge"}
		authz, label := name[:len("emqx_authz")] == "emqx_authz", "id"
		if authz {
			label = "type"
		}
		status := name == "emqx_authn_status" || name == "emqx_authz_status"
		for _, b := range authBackends {
			if b.authz != authz || len(nodes) == 0 {
				continue
			}
			value := func(n *node) float64 {
				if status && s.authDown[b][n.name] {
					return 0
				}
				return 1
			}
			if mode != modeUnaggregated {
				v := 1.0
				for _, n := range nodes {
					v = min(v, value(n))
				}
				f.samples = append(f.samples, promSample{id: b.id, label: label, value: v})
				continue
			}
			for _, n := range nodes {
				f.samples = append(f.samples, promSample{node: n.name, id: b.id, label: label, value: value(n)})
			}
		}
		fams = append(fams, f)
	}
	s.mu.Unlock()
	writePromText(w, fams)
}
