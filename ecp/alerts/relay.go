package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/ecp/destpolicy"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/rules"
)

// RelayPath is the route where Alertmanager posts the notifications of the
// webhooks ecp relays (alerting.Webhook.Relayed): WebhookPath, the
// project and the webhook's key (alerting.WebhookKey).
//
// The relay authenticates Alertmanager with the webhook's bearer token,
// accepts only alerts of the project its path names, and reads that
// project's webhook from that project's settings: one project's headers
// and template never meet another project's alerts. It posts to the
// webhook's URL through a client that dials only the addresses the
// notification policy allows at that moment and follows no redirect.
const RelayPath = WebhookPath + "/{project}/{webhook}"

// RelayTimeout bounds one post to a relayed webhook.
const RelayTimeout = 10 * time.Second

// maxRelayReply bounds how much of a webhook's reply ecp reads.
const maxRelayReply = 64 << 10

// Results of a relayed delivery, the values of ecp_alerts_relay_total's
// result label.
const (
	relaySent    = "sent"
	relayFailed  = "failed"
	relayRefused = "refused"
	relayGone    = "gone"
)

// CodeDestinationFailed is the error code of a relayed webhook that could
// not be reached or did not answer 2xx: Alertmanager retries.
const CodeDestinationFailed = "DestinationFailed"

func (s *Service) relay(w http.ResponseWriter, r *http.Request) error {
	if err := s.authorizeAlertmanager(r); err != nil {
		return err
	}
	project, key := mux.Vars(r)["project"], mux.Vars(r)["webhook"]
	body, err := io.ReadAll(r.Body) // bounded by the route's BodyLimit
	if err != nil {
		return err
	}
	var m webhookMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return httpapi.Invalid("", "body must be Alertmanager's webhook JSON: %v", err)
	}
	if m.Version != "4" {
		return httpapi.Invalid("version", "webhook payload version %q is not supported; ecp reads version 4 (Alertmanager 0.25 and later)", m.Version)
	}
	for i, a := range m.Alerts {
		if a.Labels[rules.LabelProject] != project {
			return httpapi.Invalid(fmt.Sprintf("alerts[%d].labels.project", i), "every alert relayed to a webhook of project %s must carry project=%q", project, project)
		}
	}
	wh, ok, err := s.relayedWebhook(r.Context(), project, key)
	if err != nil {
		return err
	}
	if !ok {
		// Removed or changed since Alertmanager loaded its route: the
		// next apply drops the route; nothing to retry.
		s.metrics.relay.WithLabelValues(relayGone).Inc()
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	policy, err := s.opts.Destinations.Load(r.Context())
	if err != nil {
		return err
	}
	client, done := relayClient(policy)
	defer done()
	bodies := [][]byte{body}
	if wh.Template != "" {
		bodies = bodies[:0]
		now := s.opts.Now()
		for _, a := range m.Alerts {
			b, err := alerting.RenderTemplate(wh.Template, alerting.TemplateAlert{Status: a.Status, Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.StartsAt}, now)
			if err != nil {
				return err
			}
			bodies = append(bodies, b)
		}
	}
	for _, b := range bodies {
		if err := s.deliver(r.Context(), client, wh, b); err != nil {
			var re *destpolicy.RefusedError
			result := relayFailed
			if errors.As(err, &re) {
				result = relayRefused
			}
			s.metrics.relay.WithLabelValues(result).Inc()
			s.logger.Warn("relayed webhook not delivered", "project", project, "webhook", key, "err", err)
			// Alertmanager retries a 5xx; the webhook's URL stays out
			// of the message (it may hold a credential).
			return &httpapi.Error{Status: http.StatusBadGateway, Code: CodeDestinationFailed,
				Message: fmt.Sprintf("webhook %s of project %s: %v", key, project, err)}
		}
		s.metrics.relay.WithLabelValues(relaySent).Inc()
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// relayedWebhook is the project's webhook with key, when alerting is on.
func (s *Service) relayedWebhook(ctx context.Context, project, key string) (alerting.Webhook, bool, error) {
	if !rules.ValidProjectID(project) {
		return alerting.Webhook{}, false, nil
	}
	st, _, err := s.loadSettings(ctx, project)
	switch {
	case errors.Is(err, kv.ErrNotFound):
		return alerting.Webhook{}, false, nil
	case err != nil:
		return alerting.Webhook{}, false, err
	case !st.Enabled:
		return alerting.Webhook{}, false, nil
	}
	for _, wh := range st.Webhooks {
		if alerting.WebhookKey(wh.URL) == key && wh.Relayed() {
			return wh, true, nil
		}
	}
	return alerting.Webhook{}, false, nil
}

// deliver posts body to the webhook with its headers.
func (s *Service) deliver(ctx context.Context, client *http.Client, wh alerting.Webhook, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, RelayTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, wh.URL, bytes.NewReader(body))
	if err != nil {
		return errors.New("the webhook's URL does not parse")
	}
	req.Header.Set("User-Agent", "ecp")
	for _, h := range wh.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	// After the tenant's headers: the body is JSON whatever they say.
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxRelayReply))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the webhook answered %s", resp.Status)
	}
	return nil
}

// relayClient is an HTTP client that dials only addresses policy allows
// (resolved and judged at dial time, then dialled by address), uses no
// proxy (which would dial for it) and follows no redirect. done releases
// its connections.
func relayClient(policy *destpolicy.Checker) (*http.Client, func()) {
	d := &net.Dialer{Timeout: RelayTimeout}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, p, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			port, err := strconv.ParseUint(p, 10, 16)
			if err != nil {
				return nil, err
			}
			addrs, err := policy.Resolve(ctx, host, uint16(port))
			if err != nil {
				return nil, err
			}
			var last error
			for _, a := range addrs {
				c, err := d.DialContext(ctx, network, netip.AddrPortFrom(a, uint16(port)).String())
				if err == nil {
					return c, nil
				}
				last = err
			}
			return nil, last
		},
		TLSHandshakeTimeout: RelayTimeout,
		ForceAttemptHTTP2:   true,
		DisableKeepAlives:   true,
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		tr.CloseIdleConnections
}
