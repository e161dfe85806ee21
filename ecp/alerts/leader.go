package alerts

import (
	"context"
	"errors"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/ecp/destpolicy"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// Run campaigns for the applier's leadership and, while it leads, applies
// the settings on every change (and every ResyncInterval, which also
// repairs files changed by hand) and moves stale alerts to history. It
// returns when ctx ends.
func (s *Service) Run(ctx context.Context) error {
	l := kv.Leadership{Client: s.cli, Prefix: leaderPrefix, Value: s.opts.ReplicaID, TTL: s.opts.SessionTTL,
		Logger: s.logger, Name: "the alert settings applier"}
	return l.Run(ctx, func(ctx context.Context, el *concurrency.Election) error {
		s.setLeader(true)
		defer s.setLeader(false)
		s.logger.Info("leading the alert settings applier", "replica", s.opts.ReplicaID)
		return s.lead(ctx, el)
	})
}

// IsLeader reports whether this replica applies the settings.
func (s *Service) IsLeader() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isLeader
}

func (s *Service) setLeader(v bool) {
	s.mu.Lock()
	s.isLeader = v
	s.mu.Unlock()
	if v {
		s.metrics.leader.Set(1)
	} else {
		s.metrics.leader.Set(0)
	}
}

// lead applies on every change until ctx ends or the watch fails.
func (s *Service) lead(ctx context.Context, el *concurrency.Election) error {
	s.index.lead(true)
	defer s.index.lead(false)
	// The clusters come from the replica's mirror: applying before its
	// first load would select none.
	if err := s.opts.Clusters.Wait(ctx); err != nil {
		return err
	}
	return kv.Reconcile{
		Client: s.cli,
		Watches: []kv.Watched{
			{Key: settingsPrefix, Prefix: true, What: "alert settings"},
			// A new notification policy may admit or refuse webhooks.
			{Key: destpolicy.Key, What: "notification policy"},
			// A storm mutes its project's route.
			{Key: stormPrefix, Prefix: true, What: "alert storms"},
			// Alerts carry the names of projects and organizations
			// (and of clusters: Signal).
			{Key: tenancy.ProjectsPrefix, Prefix: true, What: "projects and organizations"},
			{Key: tenancy.OrgsPrefix, Prefix: true, What: "projects and organizations"},
		},
		// The rules select the clusters each project holds now and name
		// them: the index signals a change of a name or a project.
		Signal: s.index.changed,
		Resync: s.opts.ResyncInterval, Retry: s.opts.RetryInterval,
		Apply:    func(ctx context.Context) error { return s.apply(ctx, el) },
		Resynced: s.sweep,
		Logger:   s.logger, Name: "alert settings",
	}.Run(ctx)
}

// sweep moves stale alerts to history and compares the active list with
// Alertmanager's, on leading and every resync.
func (s *Service) sweep(ctx context.Context) {
	if err := s.sweepStale(ctx); err != nil && ctx.Err() == nil {
		s.logger.Error("moving stale alerts to history failed", "err", err)
	}
	if err := s.reconcile(ctx); err != nil && ctx.Err() == nil {
		s.logger.Warn("comparing the active list with Alertmanager's failed", "err", err)
	}
}

// apply hands every project's settings to ecp/alerting and stores the
// outcome for every replica to show. Projects whose settings cannot be
// rendered are reported per project and not retried (they would fail the
// same way); any other failure is returned so the caller retries.
func (s *Service) apply(ctx context.Context, el *concurrency.Election) error {
	gctx, cancel := kv.WithTimeout(ctx)
	resp, err := s.cli.Get(gctx, settingsPrefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return fmt.Errorf("read alert settings: %w", err)
	}
	names, err := s.loadProjectNames(ctx)
	if err != nil {
		return err
	}
	// First, so that the lists drop a removed cluster's alerts without
	// waiting for the files and reloads below; a failure is retried with
	// the next change or resync and holds no apply back.
	removed, err := s.endRemoved(ctx, names)
	if err != nil && ctx.Err() == nil {
		s.logger.Error("moving the alerts of removed clusters to history failed", "err", err)
	}
	storms, stormRevs, err := s.storms(ctx)
	if err != nil {
		return err
	}
	projects := map[string]alerting.Settings{}
	st := applyStatus{Configured: s.alerting != nil, Leader: s.opts.ReplicaID, Revision: resp.Header.Revision, AppliedAt: s.opts.Now().UTC(), OK: true}
	for _, item := range resp.Kvs {
		rec, err := s.openSettings(string(item.Key), item.Value)
		if err != nil {
			return err
		}
		id := strings.TrimPrefix(string(item.Key), settingsPrefix)
		rec.Names = s.names(names, id)
		_, rec.Storm = storms[id]
		projects[id] = rec.Settings
		if rec.Enabled {
			st.Projects++
		}
	}
	var failed error
	if s.alerting != nil {
		var others []error
		for _, e := range flatten(s.alerting.Apply(ctx, projects)) {
			var de *alerting.DroppedError
			if errors.As(e, &de) {
				if st.Dropped == nil {
					st.Dropped = map[string][]string{}
				}
				st.Dropped[de.Project] = append(st.Dropped[de.Project], de.Field+": "+de.Err.Error())
				continue
			}
			var pe *alerting.ProjectError
			if errors.As(e, &pe) {
				if st.ProjectErrors == nil {
					st.ProjectErrors = map[string]string{}
				}
				st.ProjectErrors[pe.Project] = pe.Err.Error()
				st.Projects--
				continue
			}
			others = append(others, e)
		}
		if failed = errors.Join(others...); failed != nil {
			st.OK, st.Error = false, failed.Error()
		}
		// After the files: Prometheus no longer fires them, so nothing
		// turns them back on in Alertmanager.
		if err := s.alerting.Resolve(ctx, removed, s.opts.Now()); err != nil && ctx.Err() == nil {
			s.logger.Warn("resolving the alerts of removed clusters in Alertmanager failed; Prometheus resolves them after its resend delay", "err", err)
		}
		if failed == nil && s.opts.AlertmanagerURL != "" {
			if err := s.sendStormNotices(ctx, storms, stormRevs, projects); err != nil {
				failed = err // retried with the next apply
				st.OK, st.Error = false, err.Error()
			}
		}
	}
	if st.OK {
		s.metrics.applySuccess.Set(1)
		s.metrics.applyTime.SetToCurrentTime()
	} else {
		s.metrics.applySuccess.Set(0)
	}
	val, err := kv.Encode(statusKey, st)
	if err != nil {
		return err
	}
	pctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	// Guarded by the leader key: a deposed leader cannot overwrite what
	// the new one reported.
	tresp, err := s.cli.Txn(pctx).If(clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev())).
		Then(clientv3.OpPut(statusKey, val)).Commit()
	if err != nil {
		return errors.Join(failed, fmt.Errorf("store alerting status: %w", err))
	}
	if !tresp.Succeeded {
		return errors.Join(failed, errors.New("store alerting status: no longer the leader"))
	}
	if failed == nil {
		s.logger.Info("alert settings applied", "revision", st.Revision, "projects", st.Projects, "invalidProjects", len(st.ProjectErrors), "configured", st.Configured)
	}
	return failed
}

// flatten splits errors.Join trees into their leaves.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
