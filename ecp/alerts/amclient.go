package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/rules"
)

// amTimeout bounds each call to Alertmanager's API.
const amTimeout = 10 * time.Second

// amError is Alertmanager answering a call with a status other than 2xx.
type amError struct {
	Status  int
	Message string
}

func (e *amError) Error() string {
	return fmt.Sprintf("alertmanager answered %d: %s", e.Status, e.Message)
}

// errNoAlertmanager is returned by amCall without --alertmanager.url.
var errNoAlertmanager = errors.New("no alertmanager URL")

// amCall calls Alertmanager's API v2 at path (under /api/v2) with in as the
// JSON body when not nil, decoding the reply into out when not nil.
func (s *Service) amCall(ctx context.Context, method, path string, query url.Values, in, out any) error {
	if s.opts.AlertmanagerURL == "" {
		return errNoAlertmanager
	}
	ctx, cancel := context.WithTimeout(ctx, amTimeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	u := strings.TrimRight(s.opts.AlertmanagerURL, "/") + "/api/v2" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s alertmanager %s: %w", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return &amError{Status: resp.StatusCode, Message: strings.TrimSpace(string(msg))}
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAMReply)).Decode(out); err != nil {
		return fmt.Errorf("%s alertmanager %s: %w", method, path, err)
	}
	return nil
}

// maxAMReply bounds what ecp reads of one Alertmanager reply.
const maxAMReply = 64 << 20

// Codes of the errors Alertmanager causes.
const (
	CodeAlertmanagerRefused     = "AlertmanagerRefused"
	CodeAlertmanagerUnreachable = "AlertmanagerUnreachable"
)

// amAPIError is what a user sees when Alertmanager could not do a call
// made on their behalf: 409 without an Alertmanager, 502 otherwise, with
// Alertmanager's own message.
func amAPIError(what string, err error) error {
	var ae *amError
	switch {
	case errors.Is(err, errNoAlertmanager):
		return httpapi.Conflict("%s live in Alertmanager, and this ecp has none: a system admin starts it with --alertmanager.url, --alertmanager.config-file and --prometheus.rules-dir", what)
	case errors.As(err, &ae):
		return &httpapi.Error{Status: http.StatusBadGateway, Code: CodeAlertmanagerRefused, Message: fmt.Sprintf("Alertmanager refused %s: %d: %s", what, ae.Status, ae.Message)}
	case err != nil:
		return &httpapi.Error{Status: http.StatusBadGateway, Code: CodeAlertmanagerUnreachable, Message: "Alertmanager could not be reached: " + err.Error()}
	}
	return nil
}

// amAlert is an alert as Alertmanager's GET /api/v2/alerts lists it (the
// fields ecp reads).
type amAlert struct {
	Fingerprint string            `json:"fingerprint"`
	StartsAt    time.Time         `json:"startsAt"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	// GeneratorURL is Prometheus' link to the rule.
	GeneratorURL string `json:"generatorURL"`
	Status       struct {
		State      string   `json:"state"`
		SilencedBy []string `json:"silencedBy"`
	} `json:"status"`
}

// id is the ecp alert id of a.
func (a amAlert) id() string {
	return AlertID(fingerprintOf(webhookAlert{Fingerprint: a.Fingerprint, Labels: a.Labels}), a.StartsAt)
}

// amAlerts lists the alerts Alertmanager holds (active, silenced, inhibited
// or unprocessed), only project's when project is not empty.
func (s *Service) amAlerts(ctx context.Context, project string) ([]amAlert, error) {
	q := url.Values{}
	if project != "" {
		q.Set("filter", fmt.Sprintf("%s=%q", rules.LabelProject, project)) // project ids need no escaping
	}
	var list []amAlert
	if err := s.amCall(ctx, http.MethodGet, "/alerts", q, nil, &list); err != nil {
		return nil, fmt.Errorf("list alertmanager's alerts: %w", err)
	}
	return list, nil
}
