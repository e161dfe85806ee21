package alerts

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/seal"
	"github.com/ecpio/ecp/internal/secret"
)

// Keys this package owns in etcd.
//
//	/ecp/alerts/settings/<project>          alerting.Settings plus updatedAt, sealed
//	/ecp/alerts/status                      the leader's last apply (applyStatus)
//	/ecp/alerts/webhook-token               bearer token Alertmanager sends ecp, sealed
//	/ecp/alerts/active/<project>/<id>       a firing alert (Alert)
//	/ecp/alerts/history/<project>/<id>      an ended alert, on a retention lease
//	/ecp/alerts/ids/<id>                    the project of alert id, for DELETE
//	/ecp/alerts/leader/…                    concurrency.Election of the applier
//	/ecp/alerts/storm/<project>             the project's alert storm (stormRecord), until cleared
//	/ecp/alerts/recent/<project>/<id>       an alert first stored within StormWindow, on a short lease
const (
	Prefix         = "/ecp/alerts/"
	settingsPrefix = Prefix + "settings/"
	statusKey      = Prefix + "status"
	tokenKey       = Prefix + "webhook-token"
	activePrefix   = Prefix + "active/"
	historyPrefix  = Prefix + "history/"
	idsPrefix      = Prefix + "ids/"
	leaderPrefix   = Prefix + "leader"
	stormPrefix    = Prefix + "storm/"
	recentPrefix   = Prefix + "recent/"
)

// States of an alert in the lists.
const (
	StateActive  = "active"
	StateHistory = "history"
)

// Why an alert ended.
const (
	// EndResolved: Alertmanager sent its resolution.
	EndResolved = "resolved"
	// EndStale: Alertmanager stopped re-notifying it (see StaleAfter).
	EndStale = "stale"
	// EndGone: Alertmanager no longer holds it, though ecp never heard
	// its resolution.
	EndGone = "gone"
	// EndRemoved: its cluster was deleted or transferred to another
	// project.
	EndRemoved = "removed"
)

// Alert is one alert episode as the lists show it.
type Alert struct {
	// ID is stable for one episode: derived from Alertmanager's
	// fingerprint (the label set) and startsAt.
	ID      string `json:"id"`
	Name    string `json:"name"`
	Project string `json:"project"`
	Cluster string `json:"cluster"`
	// ClusterName is the cluster's name when the alert was last notified
	// (annotation cluster_name), which outlives a deleted cluster.
	ClusterName string `json:"clusterName,omitempty"`
	Severity    string `json:"severity"`
	// Summary, Description and Link are the rule's annotations; Link
	// points back into ecp's console.
	Summary     string `json:"summary"`
	Description string `json:"description"`
	Link        string `json:"link"`
	// Labels are all the alert's labels (connector or rule id, node, …).
	Labels   map[string]string `json:"labels"`
	StartsAt time.Time         `json:"startsAt"`
	// EndsAt is null while active.
	EndsAt *time.Time `json:"endsAt"`
	State  string     `json:"state"`
	// EndReason says why it ended: resolved, stale, gone or removed.
	EndReason string `json:"endReason,omitempty"`
	// LastNotifiedAt is when Alertmanager last told ecp about it.
	LastNotifiedAt time.Time `json:"lastNotifiedAt"`
	Fingerprint    string    `json:"fingerprint"`
	GeneratorURL   string    `json:"generatorUrl,omitempty"`
	// SilencedBy are the ids of the silences muting it now, as
	// Alertmanager says when the list is read; never stored.
	SilencedBy []string `json:"silencedBy,omitempty"`
}

func activeKey(project, id string) string  { return activePrefix + project + "/" + id }
func historyKey(project, id string) string { return historyPrefix + project + "/" + id }

// storedSettings is a project's settings record.
type storedSettings struct {
	alerting.Settings
	UpdatedAt time.Time `json:"updatedAt"`
	UpdatedBy string    `json:"updatedBy,omitempty"`
}

// sealSettings encodes a project's settings record sealed: its webhook URLs
// may carry credentials (a Slack-style URL is one; Alertmanager treats
// webhook URLs as secrets too).
func (s *Service) sealSettings(project string, rec storedSettings) (string, error) {
	val, err := kv.Encode(settingsPrefix+project, rec)
	if err != nil {
		return "", err
	}
	return s.opts.Seal.Seal(settingsPrefix+project, []byte(val)), nil
}

// openSettings decodes a stored settings record; one an older ecp stored in
// clear is read as it is and sealed by its next save.
func (s *Service) openSettings(key string, value []byte) (storedSettings, error) {
	var rec storedSettings
	b, _, err := s.opts.Seal.Open(key, value)
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("decode %s: %w", key, err)
	}
	return rec, nil
}

// loadSettings reads project's settings record and its mod revision;
// kv.ErrNotFound when none was saved.
func (s *Service) loadSettings(ctx context.Context, project string) (storedSettings, int64, error) {
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, settingsPrefix+project)
	if err != nil {
		return storedSettings{}, 0, fmt.Errorf("get %s: %w", settingsPrefix+project, err)
	}
	if len(resp.Kvs) == 0 {
		return storedSettings{}, 0, kv.ErrNotFound
	}
	rec, err := s.openSettings(settingsPrefix+project, resp.Kvs[0].Value)
	return rec, resp.Kvs[0].ModRevision, err
}

// applyStatus is the leader's last apply, shown by every replica.
type applyStatus struct {
	Configured bool   `json:"configured"`
	Leader     string `json:"leader"`
	// Revision is the etcd revision of the settings that were applied.
	Revision  int64     `json:"revision"`
	AppliedAt time.Time `json:"appliedAt"`
	OK        bool      `json:"ok"`
	Error     string    `json:"error,omitempty"`
	// ProjectErrors are projects left out, and why.
	ProjectErrors map[string]string `json:"projectErrors,omitempty"`
	// Dropped are the webhooks left out of applied projects because the
	// notification policy refused where they resolved: project → reasons.
	Dropped map[string][]string `json:"dropped,omitempty"`
	// Projects counts the enabled projects applied.
	Projects int `json:"projects"`
}

// WebhookToken returns the bearer token Alertmanager sends to ecp's webhook,
// creating it on first use. Every replica reads the same one. It is stored
// sealed with key; a token an older ecp stored in clear is sealed here.
func WebhookToken(ctx context.Context, cli *clientv3.Client, key *seal.Key) (secret.String, error) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms.
	fresh := "ecpam_" + base64.RawURLEncoding.EncodeToString(b)
	cctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := cli.Txn(cctx).If(clientv3.Compare(clientv3.CreateRevision(tokenKey), "=", 0)).
		Then(clientv3.OpPut(tokenKey, key.Seal(tokenKey, []byte(fresh)))).Else(clientv3.OpGet(tokenKey)).Commit()
	if err != nil {
		return "", fmt.Errorf("load alertmanager webhook token: %w", err)
	}
	if resp.Succeeded {
		return secret.String(fresh), nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 || len(kvs[0].Value) == 0 {
		return "", errors.New("load alertmanager webhook token: stored token is empty")
	}
	token, sealed, err := key.Open(tokenKey, kvs[0].Value)
	if err != nil {
		return "", fmt.Errorf("load alertmanager webhook token: %w", err)
	}
	if !sealed {
		// Only if unchanged: a concurrent replica sealing it wins.
		if _, err := cli.Txn(cctx).If(clientv3.Compare(clientv3.ModRevision(tokenKey), "=", kvs[0].ModRevision)).
			Then(clientv3.OpPut(tokenKey, key.Seal(tokenKey, token))).Commit(); err != nil {
			return "", fmt.Errorf("seal alertmanager webhook token: %w", err)
		}
	}
	return secret.String(token), nil
}

// leases hands out one lease per hour of history records, each living
// retention+1h, so etcd drops history by itself without a lease per record
// or a cleanup scan. The storm guard's marks use one lease per every
// (a few seconds) instead of an hour.
type leases struct {
	cli *clientv3.Client
	ttl time.Duration
	// every is how long one lease is handed out; an hour when zero.
	every time.Duration

	mu     sync.Mutex
	bucket int64
	id     clientv3.LeaseID
}

func (l *leases) get(ctx context.Context, at time.Time) (clientv3.LeaseID, error) {
	every := l.every
	if every <= 0 {
		every = time.Hour
	}
	bucket := at.UnixNano() / int64(every)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.id != 0 && l.bucket == bucket {
		return l.id, nil
	}
	resp, err := l.cli.Grant(ctx, int64(l.ttl/time.Second))
	if err != nil {
		return 0, fmt.Errorf("grant alert history lease: %w", err)
	}
	l.id, l.bucket = resp.ID, bucket
	return resp.ID, nil
}

func (l *leases) forget() {
	l.mu.Lock()
	l.id = 0
	l.mu.Unlock()
}

// txnWithLease runs build(lease) as a transaction, taking a fresh lease once
// if the cached one vanished behind our back.
func (l *leases) txn(ctx context.Context, at time.Time, run func(clientv3.LeaseID) (*clientv3.TxnResponse, error)) (*clientv3.TxnResponse, error) {
	for attempt := 0; ; attempt++ {
		lease, err := l.get(ctx, at)
		if err != nil {
			return nil, err
		}
		resp, err := run(lease)
		if errors.Is(err, rpctypes.ErrLeaseNotFound) && attempt == 0 {
			l.forget()
			continue
		}
		return resp, err
	}
}
