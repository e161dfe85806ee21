package app

import (
	"github.com/ecpio/ecp/ecp/destpolicy"
)

// buildNotificationPolicy mounts GET/PUT /system/notification-policy
// (ecp/destpolicy) and returns the store alert settings are checked
// against. Every endpoint of ecp's own stack is refused whatever the system
// admin allows: those fixed at start, and the log store as it is now.
func (a *App) buildNotificationPolicy(env Env) *destpolicy.Store {
	static := []destpolicy.Dependency{
		{Name: "ecp", Endpoint: a.ln.Addr().String()},
		{Name: "ecp", Endpoint: a.opts.ExternalURL},
		{Name: "Prometheus", Endpoint: a.opts.Alerts.PrometheusURL},
		{Name: "Alertmanager", Endpoint: a.opts.Alerts.AlertmanagerURL},
		{Name: "ecp's Alertmanager webhook", Endpoint: a.opts.Alerts.WebhookURL},
		{Name: "the remote-write backend", Endpoint: a.opts.RemoteWriteURL},
		{Name: "the SMTP server", Endpoint: a.opts.Alerts.SMTP.Smarthost},
		{Name: "Grafana", Endpoint: a.opts.Grafana.URL},
	}
	endpoints := a.opts.EtcdEndpoints
	if a.etcd != nil {
		endpoints = []string{a.etcd.Endpoint()}
	}
	for _, e := range endpoints {
		static = append(static, destpolicy.Dependency{Name: "etcd", Endpoint: e})
	}
	deps := func() []destpolicy.Dependency {
		out := static
		if f, ok := a.logReceiverURL.Load().(func() string); ok {
			out = append(out[:len(out):len(out)], destpolicy.Dependency{Name: "the log store", Endpoint: f()})
		}
		return out
	}
	s := destpolicy.NewStore(a.cli, a.authz, destpolicy.Options{Dependencies: deps})
	s.Register(env.API, env.Adapter)
	return s
}
