package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/testbed"
)

// TestMetricsPath runs the metrics path with the built binaries and
// Debian's Prometheus 2.42: the agent pushes every collection through ecp's
// remote-write gateway, the series arrive in Prometheus stamped with the
// entry's project and cluster, a transfer changes the project stamp from
// then on, and a connector failed on the simulator shows in the project's
// monitoring overview with a link to its page on the cluster's dashboard.
func TestMetricsPath(t *testing.T) {
	t.Parallel() // see TestMain
	if testing.Short() {
		t.Skip("end-to-end: runs the built binaries and Prometheus")
	}
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is not installed: run scripts/install-prometheus.sh (Debian's prometheus 2.42)")
	}
	ctx := t.Context()
	dir := t.TempDir()
	promAddr, err := testbed.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	promURL := "http://" + promAddr
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global:\n  scrape_interval: 15s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	prom, err := testbed.Start("prometheus", promBin, []string{"--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(dir, "tsdb"),
		"--web.listen-address=" + promAddr, "--web.enable-remote-write-receiver"}, nil, filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = prom.Stop()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", prom.Tail(4096))
		}
	})
	if err := prom.WaitReady(ctx, promURL+"/-/ready", 30*time.Second); err != nil {
		t.Fatal(err)
	}

	s := startECPWith(t, "--remote-write.url", promURL+"/api/v1/write")
	simURL := s.newSim()
	ps := s.projects("plant", "lab")
	plant, lab := ps[0], ps[1]
	entry := s.manage(plant.ID, simURL).entry

	t.Run("agent series arrive in Prometheus stamped with project and cluster", func(t *testing.T) {
		eventually(t, 30*time.Second, "emqx_up of the cluster in Prometheus", func() (bool, string) {
			got := promQuery(t, promURL, fmt.Sprintf(`emqx_up{cluster=%q}`, entry.ID))
			return len(got) == 1 && got[0]["project"] == plant.ID, fmt.Sprint(got)
		})
		// Per-object series come through too, and none without the stamp.
		if got := promQuery(t, promURL, fmt.Sprintf(`emqx_connector_status{cluster=%q,project=%q}`, entry.ID, plant.ID)); len(got) == 0 {
			t.Fatal("no emqx_connector_status series of the cluster in Prometheus")
		}
		if got := promQuery(t, promURL, `{__name__=~"emqx_.+",project=""}`); len(got) > 0 {
			t.Fatalf("series without a project stamp: %v", got)
		}
	})

	t.Run("after a transfer new samples carry the new project", func(t *testing.T) {
		if got := promQuery(t, promURL, fmt.Sprintf(`emqx_up{cluster=%q,project=%q}`, entry.ID, lab.ID)); len(got) != 0 {
			t.Fatalf("lab series before the transfer: %v", got)
		}
		if err := s.api.Do(ctx, http.MethodPost, "/api/v1/clusters/"+entry.ID+"/transfer", map[string]string{"project": lab.ID}, nil); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "emqx_up stamped with the new project", func() (bool, string) {
			got := promQuery(t, promURL, fmt.Sprintf(`emqx_up{cluster=%q,project=%q}`, entry.ID, lab.ID))
			return len(got) == 1, fmt.Sprint(got)
		})
		// From then on the old project's series gets no new sample.
		last := func() string {
			got := promQuery(t, promURL, fmt.Sprintf(`timestamp(emqx_up{cluster=%q,project=%q})`, entry.ID, plant.ID))
			if len(got) != 1 {
				t.Fatalf("plant series: %v", got)
			}
			return got[0]["__value__"]
		}
		before := last()
		time.Sleep(3 * reportInterval)
		if after := last(); after != before {
			t.Fatalf("the plant series still gets samples after the transfer: last at %s, then %s", before, after)
		}
	})

	t.Run("a failed connector shows in the overview with its dashboard link", func(t *testing.T) {
		conn := simConnectorID(t, simURL)
		c := &testbed.Client{BaseURL: simURL, HTTP: &http.Client{Timeout: 5 * time.Second}}
		if err := c.Do(ctx, http.MethodPost, "/sim/connectors/"+conn+"/fail", map[string]string{"reason": "e2e: broker gone"}, nil); err != nil {
			t.Fatal(err)
		}
		wantLink := simURL + "/#/connector/" + conn
		var ov overview
		eventually(t, 30*time.Second, "the connector in the lab project's overview", func() (bool, string) {
			ov = overview{}
			if err := s.api.Do(ctx, http.MethodGet, "/api/v1/projects/"+lab.ID+"/monitoring?cluster="+entry.ID, nil, &ov); err != nil {
				return false, err.Error()
			}
			for _, a := range ov.Abnormal {
				if a.Kind == "connector" && a.ID == conn {
					return a.ClusterID == entry.ID && a.ClusterName == "line-1" && a.DashboardURL == wantLink && a.Status != "connected", fmt.Sprintf("%+v", a)
				}
			}
			return false, fmt.Sprintf("%+v", ov)
		})
		if ov.Connectors.Disconnected < 1 || ov.Connectors.Total < ov.Connectors.Disconnected || ov.Rules.Total == 0 || ov.Connections.Total == 0 {
			t.Fatalf("overview totals %+v", ov)
		}
		// The old project no longer holds the cluster.
		var old overview
		if err := s.api.Do(ctx, http.MethodGet, "/api/v1/projects/"+plant.ID+"/monitoring", nil, &old); err != nil {
			t.Fatal(err)
		}
		if len(old.Clusters) != 0 || len(old.Abnormal) != 0 {
			t.Fatalf("the plant project still shows the transferred cluster: %+v", old)
		}
	})

	t.Run("ecp counts what it forwarded", func(t *testing.T) {
		resp, err := http.Get(s.base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "ecp_remote_write_samples_forwarded_total ") {
				if strings.TrimPrefix(line, "ecp_remote_write_samples_forwarded_total ") == "0" {
					t.Fatal("ecp forwarded no samples")
				}
				return
			}
		}
		t.Fatal("ecp_remote_write_samples_forwarded_total missing from ecp's /metrics")
	})
}

type overview struct {
	Connections struct{ Total, Online int }
	Rules       struct{ Total, Running, Stopped int }
	Connectors  struct{ Total, Connected, Disconnected int }
	Clusters    []struct{ ID string }
	Abnormal    []struct {
		ClusterID, ClusterName, Kind, ID, Status, Reason, DashboardURL string
	}
}

// startECPWith is startECP with extra serve flags.
func startECPWith(t *testing.T, extra ...string) *stack {
	t.Helper()
	s := &stack{t: t, dir: t.TempDir()}
	addr, err := testbed.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	s.base = "http://" + addr
	s.ecp = s.start("ecp", bins.Path("ecp"), append([]string{"serve",
		"--web.listen-address", addr, "--web.external-url", s.base,
		"--data.dir", filepath.Join(s.dir, "ecp"), "--downloads.dir", bins.DistDir,
		"--agent.report-interval", reportInterval.String(), "--log.level", "debug"}, extra...),
		[]string{"ECP_ADMIN_USERNAME=admin", "ECP_ADMIN_PASSWORD=" + adminPassword})
	if err := s.ecp.WaitReady(t.Context(), s.base+"/-/ready", time.Minute); err != nil {
		t.Fatal(err)
	}
	s.api, err = testbed.Login(t.Context(), s.base, "admin", adminPassword)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// promQuery runs an instant query and returns the label sets of the
// result, each with its value under "__value__".
func promQuery(t *testing.T, promURL, query string) []map[string]string {
	t.Helper()
	resp, err := http.Get(promURL + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Status != "success" {
		t.Fatalf("query %s: %v %s", query, err, out.Error)
	}
	var labels []map[string]string
	for _, r := range out.Data.Result {
		if len(r.Value) == 2 {
			// The sample value rides along under a name no label can have.
			r.Metric["__value__"] = fmt.Sprint(r.Value[1])
		}
		labels = append(labels, r.Metric)
	}
	return labels
}

// simConnectorID is the id EMQX (the simulator) gives its first connector.
func simConnectorID(t *testing.T, simURL string) string {
	t.Helper()
	c := &testbed.Client{BaseURL: simURL, HTTP: &http.Client{Timeout: 5 * time.Second}}
	var login struct {
		Token string `json:"token"`
	}
	if err := c.Do(t.Context(), http.MethodPost, "/api/v5/login", map[string]string{"username": "admin", "password": "public"}, &login); err != nil {
		t.Fatal(err)
	}
	c.Token = login.Token
	var conns []struct {
		Type   string `json:"type"`
		Name   string `json:"name"`
		Status string `json:"status"`
	}
	if err := c.Do(t.Context(), http.MethodGet, "/api/v5/connectors", nil, &conns); err != nil {
		t.Fatal(err)
	}
	for _, cn := range conns {
		if cn.Status == "connected" {
			return cn.Type + ":" + cn.Name
		}
	}
	t.Fatalf("the simulator has no connected connector: %+v", conns)
	return ""
}
