package alerts

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/rules"
)

// MaxWebhookBody bounds a notification. ecp's own route sends one alert per
// notification; the bound only guards against a misrouted flood.
const MaxWebhookBody = 8 << 20

// LabelTest marks the alerts of "send test notification": they reach the
// project's channels but never ecp's lists.
const LabelTest = alerting.LabelTest

// webhookMessage is Alertmanager's webhook payload, version 4 (the fields
// ecp reads; 0.34 adds more, which are ignored).
type webhookMessage struct {
	Version  string         `json:"version"`
	Status   string         `json:"status"`
	Receiver string         `json:"receiver"`
	Alerts   []webhookAlert `json:"alerts"`
}

type webhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// webhook receives Alertmanager's notifications.
func (s *Service) webhook(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorizeAlertmanager(r); err != nil {
		return err
	}
	var m webhookMessage
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxWebhookBody)).Decode(&m); err != nil {
		return httpapi.Invalid("", "body must be Alertmanager's webhook JSON: %v", err)
	}
	if m.Version != "4" {
		return httpapi.Invalid("version", "webhook payload version %q is not supported; ecp reads version 4 (Alertmanager 0.25 and later)", m.Version)
	}
	var errs []error
	for _, a := range m.Alerts {
		result, err := s.receive(r.Context(), a)
		if err != nil {
			errs = append(errs, err)
			result = "error"
		}
		s.metrics.notifications.WithLabelValues(result).Inc()
	}
	if err := errors.Join(errs...); err != nil {
		// 500 makes Alertmanager retry the notification.
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// authorizeAlertmanager checks the bearer token ecp writes into
// Alertmanager's configuration for its webhook and relay.
func (s *Service) authorizeAlertmanager(r *http.Request) error {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.token.Reveal())) != 1 {
		return httpapi.Unauthorized("the Alertmanager webhook needs the bearer token ecp writes into Alertmanager's configuration")
	}
	return nil
}

// AlertID is the stable id of one alert episode.
func AlertID(fingerprint string, startsAt time.Time) string {
	// Its start counts to the millisecond: Alertmanager's API lists times
	// so, while its webhook passes on what the sender sent, and a sender
	// other than Prometheus (a custom alarm) sends finer ones; the same
	// episode must have one id either way.
	sum := sha256.Sum256([]byte(fingerprint + "|" + startsAt.UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano)))
	return hex.EncodeToString(sum[:8])
}

// fingerprintOf is Alertmanager's fingerprint, or one of ecp's own from the
// sorted labels when a sender leaves it out.
func fingerprintOf(a webhookAlert) string {
	if a.Fingerprint != "" {
		return a.Fingerprint
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
		b.WriteString(k + "\x00" + a.Labels[k] + "\x00")
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:8])
}

func (s *Service) toAlert(a webhookAlert) Alert {
	fp := fingerprintOf(a)
	return Alert{
		ID: AlertID(fp, a.StartsAt), Name: a.Labels["alertname"],
		Project: a.Labels[rules.LabelProject], Cluster: a.Labels[rules.LabelCluster], Severity: a.Labels[rules.LabelSeverity],
		ClusterName: a.Annotations[rules.AnnotationClusterName],
		Summary:     a.Annotations[rules.AnnotationSummary], Description: a.Annotations[rules.AnnotationDescription], Link: a.Annotations[rules.AnnotationLink],
		Labels: a.Labels, StartsAt: a.StartsAt.UTC(), State: StateActive,
		LastNotifiedAt: s.opts.Now().UTC(), Fingerprint: fp, GeneratorURL: a.GeneratorURL,
	}
}

// receive records one alert of a notification; it returns the result label.
func (s *Service) receive(ctx context.Context, a webhookAlert) (string, error) {
	if !rules.ValidProjectID(a.Labels[rules.LabelProject]) || a.Labels[LabelTest] != "" || a.StartsAt.IsZero() {
		return "ignored", nil
	}
	al := s.toAlert(a)
	if a.Status == "resolved" {
		end := a.EndsAt.UTC()
		if end.IsZero() {
			end = al.LastNotifiedAt
		}
		return s.end(ctx, al, end, EndResolved)
	}
	return s.fire(ctx, al)
}

// refreshEvery limits rewrites of an unchanged active alert to keep
// LastNotifiedAt roughly current without a write per notification.
const refreshEvery = time.Minute

// fire stores a firing alert unless its episode already ended.
func (s *Service) fire(ctx context.Context, al Alert) (string, error) {
	key := activeKey(al.Project, al.ID)
	var cur Alert
	rev, err := kv.Get(ctx, s.cli, key, &cur)
	isNew := errors.Is(err, kv.ErrNotFound)
	switch {
	case isNew:
	case err != nil:
		return "", err
	case sameAlert(cur, al) && al.LastNotifiedAt.Sub(cur.LastNotifiedAt) < refreshEvery:
		return "unchanged", nil
	}
	val, err := kv.Encode(key, al)
	if err != nil {
		return "", err
	}
	idx, err := kv.Encode(idsPrefix+al.ID, idRecord{Project: al.Project, State: StateActive})
	if err != nil {
		return "", err
	}
	cctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	// A late or repeated firing notification must not resurrect an episode
	// that already moved to history, nor overwrite a newer write.
	resp, err := s.cli.Txn(cctx).If(
		clientv3.Compare(clientv3.Version(historyKey(al.Project, al.ID)), "=", 0),
		clientv3.Compare(clientv3.ModRevision(key), "=", rev),
	).Then(clientv3.OpPut(key, val), clientv3.OpPut(idsPrefix+al.ID, idx)).Commit()
	if err != nil {
		return "", fmt.Errorf("store active alert %s: %w", al.ID, err)
	}
	if !resp.Succeeded {
		return "unchanged", nil
	}
	if isNew {
		// The alert is stored: a failure here must not have
		// Alertmanager retry it.
		if err := s.markNew(ctx, al); err != nil {
			s.logger.Warn("the storm guard could not count an alert", "alert", al.ID, "project", al.Project, "err", err)
		}
	}
	return "stored", nil
}

func sameAlert(a, b Alert) bool {
	return a.Name == b.Name && a.Severity == b.Severity && a.Summary == b.Summary && a.Description == b.Description && a.ClusterName == b.ClusterName &&
		a.Link == b.Link && maps.Equal(a.Labels, b.Labels) && a.StartsAt.Equal(b.StartsAt)
}

// idRecord says where alert id lives.
type idRecord struct {
	Project string `json:"project"`
	State   string `json:"state"`
}

// end moves an alert episode to history (or stores it there directly when
// ecp never saw it fire). The active record, when there is one, is what
// goes to history, with the end time and reason.
func (s *Service) end(ctx context.Context, al Alert, at time.Time, reason string) (string, error) {
	hk := historyKey(al.Project, al.ID)
	ak := activeKey(al.Project, al.ID)
	var cur Alert
	rev, err := kv.Get(ctx, s.cli, ak, &cur)
	switch {
	case errors.Is(err, kv.ErrNotFound):
	case err != nil:
		return "", err
	default:
		if al.Name == "" { // a stale sweep passes only the key fields
			al = cur
		}
		al.StartsAt = cur.StartsAt
	}
	al.State, al.EndReason = StateHistory, reason
	end := at.UTC()
	al.EndsAt = &end
	val, err := kv.Encode(hk, al)
	if err != nil {
		return "", err
	}
	idx, err := kv.Encode(idsPrefix+al.ID, idRecord{Project: al.Project, State: StateHistory})
	if err != nil {
		return "", err
	}
	cctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := s.history.txn(cctx, s.opts.Now(), func(lease clientv3.LeaseID) (*clientv3.TxnResponse, error) {
		return s.cli.Txn(cctx).If(
			clientv3.Compare(clientv3.Version(hk), "=", 0),
			clientv3.Compare(clientv3.ModRevision(ak), "=", rev),
		).Then(
			clientv3.OpDelete(ak),
			clientv3.OpPut(hk, val, clientv3.WithLease(lease)),
			clientv3.OpPut(idsPrefix+al.ID, idx, clientv3.WithLease(lease)),
		).Commit()
	})
	if err != nil {
		return "", fmt.Errorf("move alert %s to history: %w", al.ID, err)
	}
	if !resp.Succeeded {
		return "unchanged", nil
	}
	s.metrics.moved.WithLabelValues(reason).Inc()
	return "stored", nil
}

// sweepStale moves active alerts Alertmanager stopped re-notifying to
// history. An alert Alertmanager still holds is alive though silent: a
// silence stops its repeats to ecp too, and may last up to
// MaxSilenceDuration. Only the leader calls it.
func (s *Service) sweepStale(ctx context.Context) error {
	var held map[string]bool
	if s.opts.AlertmanagerURL != "" {
		var err error
		if held, err = s.alertmanagerIDs(ctx); err != nil {
			return err
		}
	}
	all, err := kv.List[Alert](ctx, s.cli, activePrefix)
	if err != nil {
		return err
	}
	cutoff := s.opts.Now().Add(-s.opts.StaleAfter)
	var errs []error
	for _, a := range all {
		if a.LastNotifiedAt.After(cutoff) || held[a.ID] {
			continue
		}
		if _, err := s.end(ctx, Alert{ID: a.ID, Project: a.Project}, a.LastNotifiedAt, EndStale); err != nil {
			errs = append(errs, err)
			continue
		}
		s.logger.Info("active alert went stale; moved to history", "alert", a.ID, "name", a.Name, "project", a.Project, "lastNotifiedAt", a.LastNotifiedAt)
	}
	return errors.Join(errs...)
}

// reconcileGrace keeps the reconciliation off alerts notified lately: their
// notification may be on its way while Alertmanager's list already moved.
const reconcileGrace = 2 * time.Minute

// reconcile moves to history the active alerts Alertmanager no longer
// holds (their resolution never reached ecp, say while every replica was
// down), so they do not wait StaleAfter. Without an Alertmanager URL it
// does nothing. Only the leader calls it.
func (s *Service) reconcile(ctx context.Context) error {
	if s.opts.AlertmanagerURL == "" {
		return nil
	}
	held, err := s.alertmanagerIDs(ctx)
	if err != nil {
		return err
	}
	all, err := kv.List[Alert](ctx, s.cli, activePrefix)
	if err != nil {
		return err
	}
	now := s.opts.Now()
	var errs []error
	for _, a := range all {
		if held[a.ID] || now.Sub(a.LastNotifiedAt) < reconcileGrace {
			continue
		}
		if _, err := s.end(ctx, Alert{ID: a.ID, Project: a.Project}, now, EndGone); err != nil {
			errs = append(errs, err)
			continue
		}
		s.logger.Info("active alert unknown to Alertmanager; moved to history", "alert", a.ID, "name", a.Name, "project", a.Project)
	}
	return errors.Join(errs...)
}

// alertmanagerIDs lists the ids of every alert Alertmanager holds (active,
// silenced, inhibited or unprocessed).
func (s *Service) alertmanagerIDs(ctx context.Context) (map[string]bool, error) {
	list, err := s.amAlerts(ctx, "")
	if err != nil {
		return nil, err
	}
	ids := make(map[string]bool, len(list))
	for _, a := range list {
		ids[a.id()] = true
	}
	return ids, nil
}
