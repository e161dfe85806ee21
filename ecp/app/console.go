package app

import (
	"strings"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/console"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// mountConsole serves the web console on the fallback router. The console
// calls the API in-process through root (the whole router), so it shows
// exactly what the API allows.
func (a *App) mountConsole(root, fallback *mux.Router, auditLog *audit.Log, tenancyAPI *tenancy.API) error {
	c, err := console.New(console.Options{
		API:           root,
		Sessions:      a.users,
		Authz:         a.authz,
		Tenancy:       tenancyAPI,
		Clusters:      a.clusters,
		Monitoring:    a.overview,
		Alerts:        a.alerts,
		Logs:          a.logs,
		Audit:         auditLog.Middleware(auth.AuditActor),
		SecureCookies: strings.HasPrefix(a.opts.ExternalURL, "https://"),
	}, a.logger.With("component", "console"))
	if err != nil {
		return err
	}
	c.Register(fallback)
	return nil
}
