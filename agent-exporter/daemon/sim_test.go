package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/ecpio/ecp/emqx-sim/sim"
	"github.com/ecpio/ecp/emqx-sim/simtest"
)

// emqxSim is a simulated EMQX cluster with the few helpers these tests
// need on top of simtest.
type emqxSim struct {
	*simtest.Cluster
	URL string
	t   *testing.T
}

func startEMQX(t *testing.T, mods ...func(*sim.Options)) *emqxSim {
	t.Helper()
	opts := sim.DefaultOptions()
	opts.Nodes, opts.Rules, opts.Connectors = 2, 4, 3
	for _, m := range mods {
		m(&opts)
	}
	c := simtest.Start(t, opts)
	c.Step() // one tick so clients connect and counters move
	return &emqxSim{Cluster: c, URL: c.URL(), t: t}
}

// Dynamic is EMQX's dynamic_max_connections.
func (e *emqxSim) Dynamic() int { return e.State().DynamicMaxConnections }

// SetDynamic changes dynamic_max_connections through the API, as an
// operator would on EMQX's own dashboard.
func (e *emqxSim) SetDynamic(n int) {
	e.t.Helper()
	tok := e.Login(e.t, sim.DefaultUsername, sim.DefaultPassword)
	body, _ := json.Marshal(map[string]int{"dynamic_max_connections": n})
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPut, e.URL+"/api/v5/license/setting", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("dashboard PUT /license/setting: %d", resp.StatusCode)
	}
}
