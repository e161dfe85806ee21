package alerting

import (
	"fmt"
	"net/mail"
	"net/url"
	"strings"

	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/rules"
)

// Severities a project's alerts may carry, as the monitoring-mixins
// convention names them: critical pages now, warning goes to a ticket queue,
// info is for troubleshooting.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
)

// Severities lists the accepted severities.
var Severities = []string{SeverityCritical, SeverityWarning, SeverityInfo}

// Limits on a project's channels. Ten e-mail recipients is what ECP allows;
// the same bound on webhooks keeps one project from fanning out without end.
const (
	MaxEmails   = 10
	MaxWebhooks = 10
	MaxCount    = rules.MaxCount
)

// Settings are one project's alert settings, the body of
// GET/PUT /api/v1/projects/{project}/alert-settings.
type Settings struct {
	// Enabled switches the project's alerts on; off means no rules and no
	// route, so nothing fires and nothing is sent.
	Enabled bool `json:"enabled"`
	// TriggerCount is how many consecutive bad evaluations fire an alert.
	TriggerCount int `json:"triggerCount"`
	// RecoveryCount is how many consecutive good evaluations resolve it.
	RecoveryCount int `json:"recoveryCount"`
	// Severity is the severity label of every alert of the project.
	Severity string `json:"severity"`
	// EMQXAlertPush forwards EMQX's own alarms as alerts too.
	EMQXAlertPush bool `json:"emqxAlertPush"`
	// Emails receive every alert of the project and its resolution.
	Emails []string `json:"emails"`
	// Webhooks receive Alertmanager's webhook payload (version 4).
	Webhooks []Webhook `json:"webhooks"`
	// Names are what the project's alerts call its organization, itself
	// and its clusters. ecp/alerts fills them from the tenancy and cluster
	// records at every apply; they are never part of the API body.
	Names Names `json:"-"`
}

// Names are the names a project's alerts carry. Clusters is the project's
// clusters now: the rules select only these (see rules.Params.Clusters).
type Names struct {
	Organization string
	Project      string
	Clusters     []rules.Cluster
}

// Webhook is one webhook channel.
type Webhook struct {
	URL string `json:"url"`
}

// DefaultSettings are a project's settings until someone saves them:
// alerting off, as ECP ships it, with counts that ride out one bad sample.
func DefaultSettings() Settings {
	return Settings{
		Enabled:       false,
		TriggerCount:  3,
		RecoveryCount: 2,
		Severity:      SeverityWarning,
		Emails:        []string{},
		Webhooks:      []Webhook{},
	}
}

// Validate checks settings as a user sent them. The error is an
// *httpapi.Error (400) naming the first wrong field and what would be
// accepted; its "errors" member lists every wrong field the same way
// ({"field", "message"}), so a form can mark them all at once.
func (s Settings) Validate() error {
	var errs fieldErrors
	if s.TriggerCount < 1 || s.TriggerCount > MaxCount {
		errs.add("triggerCount", "triggerCount must be a whole number from 1 to %d, got %d", MaxCount, s.TriggerCount)
	}
	if s.RecoveryCount < 1 || s.RecoveryCount > MaxCount {
		errs.add("recoveryCount", "recoveryCount must be a whole number from 1 to %d, got %d", MaxCount, s.RecoveryCount)
	}
	if !validSeverity(s.Severity) {
		errs.add("severity", "severity must be one of %s, got %q", strings.Join(Severities, ", "), s.Severity)
	}
	if len(s.Emails) > MaxEmails {
		// Too many to be worth checking one by one.
		errs.add("emails", "emails holds at most %d addresses, got %d", MaxEmails, len(s.Emails))
	} else {
		seen := map[string]bool{}
		for i, e := range s.Emails {
			field := fmt.Sprintf("emails[%d]", i)
			a, err := mail.ParseAddress(e)
			key := strings.ToLower(e)
			switch {
			// Only a bare address: a display name or a comment would be
			// rendered into Alertmanager's `to` as is.
			case err != nil || a.Address != e:
				errs.add(field, "%s must be an e-mail address such as ops@example.com (RFC 5322 addr-spec), got %q", field, e)
			// user@[127.0.0.1] would have the SMTP relay connect to an
			// address of the tenant's choosing, past the notification
			// policy; a recipient names a mail domain.
			case strings.HasSuffix(e, "]"):
				errs.add(field, "%s must name a mail domain, not an address literal, got %q", field, e)
			case seen[key]:
				errs.add(field, "%s repeats %q", field, e)
			}
			seen[key] = true
		}
	}
	if len(s.Webhooks) > MaxWebhooks {
		errs.add("webhooks", "webhooks holds at most %d entries, got %d", MaxWebhooks, len(s.Webhooks))
	} else {
		seen := map[string]bool{}
		for i, w := range s.Webhooks {
			field := fmt.Sprintf("webhooks[%d].url", i)
			if err := validWebhookURL(w.URL); err != nil {
				errs.add(field, "%s must be an absolute http:// or https:// URL with a host%s, got %q", field, err, w.URL)
			} else if seen[w.URL] {
				errs.add(field, "%s repeats %q", field, w.URL)
			}
			seen[w.URL] = true
		}
	}
	return errs.err()
}

// fieldErrors collects every wrong field of a document.
type fieldErrors []map[string]string

func (e *fieldErrors) add(field, format string, args ...any) {
	*e = append(*e, map[string]string{"field": field, "message": fmt.Sprintf(format, args...)})
}

// err is the 400 naming the first wrong field, with all of them in its
// "errors" member; nil when there is none.
func (e fieldErrors) err() error {
	if len(e) == 0 {
		return nil
	}
	he := httpapi.Invalid(e[0]["field"], "%s", e[0]["message"])
	he.Details = map[string]any{"errors": []map[string]string(e)}
	return he
}

func validSeverity(s string) bool {
	for _, v := range Severities {
		if s == v {
			return true
		}
	}
	return false
}

// validWebhookURL returns nil or a short reason appended to the message.
func validWebhookURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return errReason("")
	}
	if u.User != nil {
		// Credentials in the URL would sit in plain sight in
		// Alertmanager's status page.
		return errReason(" and no user:password part")
	}
	if u.Fragment != "" {
		return errReason(" and no #fragment")
	}
	return nil
}

type errReason string

func (e errReason) Error() string { return string(e) }

// invalidNoSMTP refuses e-mail recipients this ecp cannot reach.
func invalidNoSMTP() error {
	return httpapi.Invalid("emails", "emails cannot be delivered: %v; use webhooks or ask the system admin to configure SMTP", ErrNoSMTP)
}
