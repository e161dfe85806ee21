package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/ecpio/ecp/internal/testbed"
)

// startStack runs the real components ecp drives, those that are installed
// (`make demo` installs them when it can), and returns the ecp flags that
// wire ecp to them. A missing one is explained and left out.
func (d *demo) startStack(ctx context.Context, ecpAddr string) ([]string, error) {
	dir, err := filepath.Abs(filepath.Join(d.dir, "stack"))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	var args []string

	prom, errP := testbed.Prometheus.Find(".")
	am, errA := testbed.Alertmanager.Find(".")
	mail, errM := testbed.Mailpit.Find(".")
	if err := errors.Join(errP, errA, errM); err != nil {
		d.say("Alerting is left out of the demo: %v", err)
	} else {
		if err := d.checkFree(prometheusAddr, alertmanagerAddr, smtpAddr, mailpitAddr, inboxAddr); err != nil {
			return nil, err
		}
		d.say("Starting Mailpit, Alertmanager and Prometheus…")
		rulesDir, amConfig := filepath.Join(dir, "rules"), filepath.Join(dir, "alertmanager.yml")
		if err := d.adopt(testbed.StartMailpit(ctx, mail, dir, smtpAddr, mailpitAddr)); err != nil {
			return nil, err
		}
		if d.inbox, err = serveInbox(ctx, inboxAddr, "http://"+mailpitAddr); err != nil {
			return nil, err
		}
		if err := d.adopt(testbed.StartAlertmanager(ctx, am, dir, alertmanagerAddr, amConfig)); err != nil {
			return nil, err
		}
		if err := d.adopt(testbed.StartPrometheus(ctx, prom, dir, prometheusAddr, testbed.PrometheusConfig{
			Interval: reportInterval, RulesDir: rulesDir, AlertmanagerAddr: alertmanagerAddr, ECPAddr: ecpAddr,
		})); err != nil {
			return nil, err
		}
		d.alerting = true
		args = append(args,
			"--remote-write.url", "http://"+prometheusAddr+"/api/v1/write",
			"--prometheus.url", "http://"+prometheusAddr, "--prometheus.rules-dir", rulesDir,
			"--alertmanager.url", "http://"+alertmanagerAddr, "--alertmanager.config-file", amConfig,
			"--smtp.smarthost", smtpAddr, "--smtp.from", "ecp@demo.example", "--no-smtp.require-tls")
	}

	if vl, err := testbed.VictoriaLogs.Find("."); err != nil {
		d.say("Log collection is left out of the demo: %v", err)
	} else {
		if err := d.checkFree(victoriaLogsAddr); err != nil {
			return nil, err
		}
		if err := d.adopt(testbed.StartVictoriaLogs(ctx, vl, dir, victoriaLogsAddr)); err != nil {
			return nil, err
		}
		d.logs = true
	}
	return args, nil
}

// adopt records a started process so down stops it.
func (d *demo) adopt(p *testbed.Proc, err error) error {
	if err != nil {
		return err
	}
	d.procs = append(d.procs, p)
	return nil
}

// breakConnector fails the first connector of the EMQX cluster at simURL
// through the simulator's fault API, as if its remote end went away.
func breakConnector(ctx context.Context, out io.Writer, simURL string) error {
	emqx := &testbed.Client{BaseURL: simURL, HTTP: &http.Client{Timeout: 10 * time.Second}}
	var login struct {
		Token string `json:"token"`
	}
	if err := emqx.Do(ctx, http.MethodPost, "/api/v5/login", map[string]string{"username": "admin", "password": "public"}, &login); err != nil {
		return fmt.Errorf("is the demo running? log in to EMQX at %s: %w", simURL, err)
	}
	emqx.Token = login.Token
	var connectors []struct {
		Type string `json:"type"`
		Name string `json:"name"`
	}
	if err := emqx.Do(ctx, http.MethodGet, "/api/v5/connectors", nil, &connectors); err != nil {
		return fmt.Errorf("list connectors: %w", err)
	}
	if len(connectors) == 0 {
		return fmt.Errorf("EMQX at %s has no connector to break", simURL)
	}
	id := connectors[0].Type + ":" + connectors[0].Name
	if err := emqx.Do(ctx, http.MethodPost, "/sim/connectors/"+id+"/fail", map[string]string{"reason": "econnrefused"}, nil); err != nil {
		return fmt.Errorf("fail connector %s: %w", id, err)
	}
	_, _ = fmt.Fprintf(out, "Connector %s of %s is down (econnrefused). Heal it with:\n  curl -X POST %s/sim/connectors/%s/heal\n", id, simURL, simURL, id)
	return nil
}
