package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// bootstrapAdmin creates the first system admin when the user does not
// exist yet, and binds it to system-admin when nobody holds that role (so a
// replica that died between the two steps is repaired by the next start).
// A generated password is written once to Options.Out, never to the log.
func (a *App) bootstrapAdmin(ctx context.Context) error {
	name := a.opts.AdminUsername
	if msg := auth.ValidateUsername(name); msg != "" {
		return fmt.Errorf("admin username %q: %s", name, msg)
	}
	_, err := a.users.GetUser(ctx, name)
	switch {
	case err == nil:
	case errors.Is(err, kv.ErrNotFound):
		pw := a.opts.AdminPassword
		generated := pw.IsZero()
		if generated {
			pw = auth.GeneratePassword()
		} else if msg := auth.ValidatePassword(pw); msg != "" {
			return fmt.Errorf("ECP_ADMIN_PASSWORD: %s", msg)
		}
		_, err := a.users.CreateUser(ctx, name, pw)
		switch {
		case errors.Is(err, auth.ErrUserExists):
			// Another replica created it at the same moment.
		case err != nil:
			return fmt.Errorf("create first admin: %w", err)
		case generated:
			// The one place the password is shown: to the operator who
			// started ecp, on its terminal, once.
			_, _ = fmt.Fprintf(a.opts.Out, "ecp: created system admin %q with generated password: %s\necp: it is shown only this once; log in and keep it safe (or set ECP_ADMIN_PASSWORD before the first start).\n", name, pw.Reveal())
			a.logger.Info("first system admin created with a generated password", "username", name)
		default:
			a.logger.Info("first system admin created", "username", name)
		}
	default:
		return fmt.Errorf("look up first admin: %w", err)
	}
	bindings, err := a.authz.Store().ListBindings(ctx)
	if err != nil {
		return err
	}
	for _, b := range bindings {
		if b.Role == tenancy.RoleSystemAdmin {
			return nil
		}
	}
	u, err := a.users.GetUser(ctx, name)
	if err != nil {
		return fmt.Errorf("look up first admin: %w", err)
	}
	if _, err := a.authz.Store().CreateBinding(ctx, tenancy.Binding{Username: name, Role: tenancy.RoleSystemAdmin, UserGeneration: u.Generation}); err != nil && !errors.Is(err, tenancy.ErrExists) {
		return fmt.Errorf("bind first admin to system-admin: %w", err)
	}
	return nil
}

// licenceCollector exports the licence and what is allocated, read from
// etcd at scrape time so every replica reports the same figures.
type licenceCollector struct {
	ledger                    *quota.Ledger
	total, ceiling, allocated *prometheus.Desc
}

func newLicenceCollector(l *quota.Ledger) *licenceCollector {
	return &licenceCollector{
		ledger:    l,
		total:     prometheus.NewDesc("ecp_licence_connections", "Total connection quota of the licence.", nil, nil),
		ceiling:   prometheus.NewDesc("ecp_licence_cluster_max_connections", "Most connections the licence lets one cluster have.", nil, nil),
		allocated: prometheus.NewDesc("ecp_licence_allocated_connections", "Connections allocated to managed clusters.", nil, nil),
	}
}

func (c *licenceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.total
	ch <- c.ceiling
	ch <- c.allocated
}

func (c *licenceCollector) Collect(ch chan<- prometheus.Metric) {
	l := c.ledger.Licence()
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(l.TotalConnections))
	ch <- prometheus.MustNewConstMetric(c.ceiling, prometheus.GaugeValue, float64(l.MaxPerCluster))
	// A scrape must not hang on a dead etcd: one second, then the metric
	// is reported invalid and the rest of the scrape goes on.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	u, err := c.ledger.Usage(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.allocated, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.allocated, prometheus.GaugeValue, float64(u.Allocated))
}
