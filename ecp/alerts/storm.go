package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/tenancy"
	"github.com/ecpio/ecp/rules"
)

// stormMarkEvery is how long the marks of one lease accumulate: the window
// a mark counts in is StormWindow minus up to this.
const stormMarkEvery = 5 * time.Second

// Storm states.
const (
	StormNormal = "normal"
	StormActive = "storm"
)

// stormRecord is a project's storm, stored until an admin clears it.
type stormRecord struct {
	Since     time.Time `json:"since"`
	Count     int64     `json:"count"`
	Threshold int       `json:"threshold"`
	// NoticeAt is when the leader posted the notice to Alertmanager.
	NoticeAt *time.Time `json:"noticeAt,omitempty"`
}

// StormStatus is GET /projects/{project}/alerts/storm.
type StormStatus struct {
	// State is normal or storm.
	State string `json:"state"`
	// Threshold is the project's stormThreshold.
	Threshold int `json:"threshold"`
	// Recent counts the project's new alerts within the last minute.
	Recent int64 `json:"recent"`
	// Since, Count and NoticeAt describe the storm: when it tripped, with
	// how many alerts, and when its notice was sent (null until then).
	Since    *time.Time `json:"since"`
	Count    int64      `json:"count,omitempty"`
	NoticeAt *time.Time `json:"noticeAt"`
}

// markNew counts a newly stored alert episode toward its project's storm
// and trips the storm at the threshold.
func (s *Service) markNew(ctx context.Context, al Alert) error {
	cctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	if _, err := s.recent.txn(cctx, s.opts.Now(), func(lease clientv3.LeaseID) (*clientv3.TxnResponse, error) {
		return s.cli.Txn(cctx).Then(clientv3.OpPut(recentPrefix+al.Project+"/"+al.ID, "", clientv3.WithLease(lease))).Commit()
	}); err != nil {
		return fmt.Errorf("mark alert %s for the storm guard: %w", al.ID, err)
	}
	n, err := s.recentCount(cctx, al.Project)
	if err != nil || n < alerting.MinStormThreshold {
		return err
	}
	threshold, err := s.stormThreshold(cctx, al.Project)
	if err != nil || n < int64(threshold) {
		return err
	}
	rec := stormRecord{Since: s.opts.Now().UTC(), Count: n, Threshold: threshold}
	val, err := kv.Encode(stormPrefix+al.Project, rec)
	if err != nil {
		return err
	}
	resp, err := s.cli.Txn(cctx).If(clientv3.Compare(clientv3.CreateRevision(stormPrefix+al.Project), "=", 0)).
		Then(clientv3.OpPut(stormPrefix+al.Project, val)).Commit()
	if err != nil {
		return fmt.Errorf("record the alert storm of %s: %w", al.Project, err)
	}
	if resp.Succeeded {
		s.metrics.storms.Inc()
		s.logger.Warn("alert storm: the project's notifications stop until an admin clears it", "project", al.Project, "alerts", n, "threshold", threshold)
	}
	return nil
}

func (s *Service) recentCount(ctx context.Context, project string) (int64, error) {
	resp, err := s.cli.Get(ctx, recentPrefix+project+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("count the recent alerts of %s: %w", project, err)
	}
	return resp.Count, nil
}

// stormThreshold is project's threshold, the default for a project that
// never saved settings.
func (s *Service) stormThreshold(ctx context.Context, project string) (int, error) {
	st, _, err := s.loadSettings(ctx, project)
	if errors.Is(err, kv.ErrNotFound) {
		return alerting.DefaultStormThreshold, nil
	}
	if err != nil {
		return 0, err
	}
	return normalise(st.Settings).StormThreshold, nil
}

// storms reads every project's storm record.
func (s *Service) storms(ctx context.Context) (map[string]stormRecord, map[string]int64, error) {
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, stormPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, nil, fmt.Errorf("read alert storms: %w", err)
	}
	recs, revs := map[string]stormRecord{}, map[string]int64{}
	for _, item := range resp.Kvs {
		var rec stormRecord
		if err := json.Unmarshal(item.Value, &rec); err != nil {
			return nil, nil, fmt.Errorf("decode %s: %w", item.Key, err)
		}
		p := strings.TrimPrefix(string(item.Key), stormPrefix)
		recs[p], revs[p] = rec, item.ModRevision
	}
	return recs, revs, nil
}

// sendStormNotices posts the notice of every storm that has none yet and
// is routed (its project's alerting on, with channels), once the
// configuration that routes it runs. Only the leader calls it.
func (s *Service) sendStormNotices(ctx context.Context, storms map[string]stormRecord, revs map[string]int64, projects map[string]alerting.Settings) error {
	var errs []error
	for p, rec := range storms {
		st := projects[p]
		if rec.NoticeAt != nil || !st.Enabled || len(st.Emails)+len(st.Webhooks) == 0 {
			continue
		}
		now := s.opts.Now().UTC()
		if err := s.amCall(ctx, http.MethodPost, "/alerts", nil, []map[string]any{s.stormNotice(p, st, rec, nil)}, nil); err != nil {
			errs = append(errs, fmt.Errorf("post the storm notice of %s: %w", p, err))
			continue
		}
		rec.NoticeAt = &now
		val, err := kv.Encode(stormPrefix+p, rec)
		if err != nil {
			return err
		}
		cctx, cancel := kv.WithTimeout(ctx)
		// Only if unchanged: an admin may have cleared it meanwhile.
		_, err = s.cli.Txn(cctx).If(clientv3.Compare(clientv3.ModRevision(stormPrefix+p), "=", revs[p])).
			Then(clientv3.OpPut(stormPrefix+p, val)).Commit()
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("record the storm notice of %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// stormNotice is the notice alert of project's storm rec; resolved at end
// when end is not nil. Its labels are the same every time, so the
// resolution ends the notice Alertmanager holds.
func (s *Service) stormNotice(project string, st alerting.Settings, rec stormRecord, end *time.Time) map[string]any {
	link := strings.TrimRight(s.opts.ExternalURL, "/") + "/projects/" + project + "/alerts"
	name := st.Names.Project
	if name == "" {
		name = project
	}
	a := map[string]any{
		"labels": map[string]string{"alertname": alerting.AlertStorm, rules.LabelProject: project, rules.LabelSeverity: alerting.SeverityCritical},
		"annotations": map[string]string{
			rules.AnnotationSummary: fmt.Sprintf("Alert storm in project %s: %d alerts within a minute; its notifications are stopped.", name, rec.Count),
			rules.AnnotationDescription: fmt.Sprintf("Project %s produced %d new alerts within a minute (threshold %d). ecp keeps listing them, but sends no notification for this project until a project admin clears the storm.",
				name, rec.Count, rec.Threshold),
			rules.AnnotationLink: link, rules.AnnotationProjectName: name,
		},
		"startsAt": rec.Since, "generatorURL": link,
	}
	if end != nil {
		a["endsAt"] = *end
	}
	return a
}

func (s *Service) getStorm(w http.ResponseWriter, r *http.Request) error {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return err
	}
	out, err := s.Storm(r.Context(), ac, mux.Vars(r)["project"])
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, out)
}

// Storm is project's storm guard state (GET
// /projects/{project}/alerts/storm): 404 when the caller cannot see the
// project.
func (s *Service) Storm(ctx context.Context, ac *tenancy.Access, project string) (StormStatus, error) {
	p, err := s.authz.Project(ctx, ac, project, tenancy.View, "")
	if err != nil {
		return StormStatus{}, err
	}
	out := StormStatus{State: StormNormal}
	if out.Threshold, err = s.stormThreshold(ctx, p.ID); err != nil {
		return StormStatus{}, err
	}
	if out.Recent, err = s.recentCount(ctx, p.ID); err != nil {
		return StormStatus{}, err
	}
	var rec stormRecord
	switch _, err := kv.Get(ctx, s.cli, stormPrefix+p.ID, &rec); {
	case errors.Is(err, kv.ErrNotFound):
	case err != nil:
		return StormStatus{}, err
	default:
		out.State, out.Since, out.Count, out.NoticeAt = StormActive, &rec.Since, rec.Count, rec.NoticeAt
	}
	return out, nil
}

func (s *Service) clearStorm(w http.ResponseWriter, r *http.Request) error {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return err
	}
	if err := s.ClearStorm(r.Context(), ac, mux.Vars(r)["project"]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ClearStorm ends project's alert storm, so its notifications flow again
// (DELETE /projects/{project}/alerts/storm): 404 when the caller cannot
// see the project, 403 when they may not change it, 409 when there is no
// storm.
func (s *Service) ClearStorm(ctx context.Context, ac *tenancy.Access, project string) error {
	p, err := s.authz.Project(ctx, ac, project, tenancy.Admin, "")
	if err != nil {
		return err
	}
	audit.Annotate(ctx, audit.Note{Org: p.Org, Project: p.ID, Target: "alerts/storm/" + p.ID})
	tctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := s.cli.Txn(tctx).Then(
		clientv3.OpGet(stormPrefix+p.ID),
		clientv3.OpDelete(stormPrefix+p.ID),
		clientv3.OpDelete(recentPrefix+p.ID+"/", clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return fmt.Errorf("clear the alert storm of %s: %w", p.ID, err)
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return httpapi.Conflict("project %s is not in an alert storm", p.ID)
	}
	var rec stormRecord
	if err := json.Unmarshal(kvs[0].Value, &rec); err != nil {
		return fmt.Errorf("decode %s: %w", kvs[0].Key, err)
	}
	if rec.NoticeAt != nil {
		// Resolved now, the notice cannot reach the channels again
		// through the route the next apply restores.
		now := s.opts.Now().UTC()
		if err := s.amCall(ctx, http.MethodPost, "/alerts", nil, []map[string]any{s.stormNotice(p.ID, alerting.Settings{Names: alerting.Names{Project: p.Name}}, rec, &now)}, nil); err != nil {
			s.logger.Warn("resolving the storm notice in alertmanager failed; it resolves by itself", "project", p.ID, "err", err)
		}
	}
	s.logger.Info("alert storm cleared", "project", p.ID)
	return nil
}
