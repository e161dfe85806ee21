package app

import (
	"strings"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/console"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// consoleServices are the API packages' services the console calls that
// the App keeps no field of.
type consoleServices struct {
	audit   *audit.Log
	tenancy *tenancy.API
	auth    *auth.API
	quota   *quota.Scopes
}

// mountConsole serves the web console on the fallback router. The console
// calls the API packages' service methods, the ones their routes call, so
// it shows exactly what the API allows.
func (a *App) mountConsole(fallback *mux.Router, s consoleServices) error {
	c, err := console.New(console.Options{
		Sessions:      a.users,
		Authz:         a.authz,
		Tenancy:       s.tenancy,
		Auth:          s.auth,
		Quota:         s.quota,
		AuditLog:      s.audit,
		Policy:        a.policy,
		Clusters:      a.clusters,
		Monitoring:    a.overview,
		Alerts:        a.alerts,
		Logs:          a.logs,
		Audit:         s.audit.Middleware(auth.AuditActor),
		SecureCookies: strings.HasPrefix(a.opts.ExternalURL, "https://"),
	}, a.logger.With("component", "console"))
	if err != nil {
		return err
	}
	c.Register(fallback)
	return nil
}
