package alerting

import (
	"fmt"
	"maps"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"time"

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
	// DefaultStormThreshold is ECP's alarm-storm threshold: 50 alerts
	// within a minute.
	DefaultStormThreshold = 50
	MinStormThreshold     = 5
	MaxStormThreshold     = 10000
)

// StormWindow is the window StormThreshold counts alerts in.
const StormWindow = time.Minute

// AlertStorm is the alertname of the one notice that tells a project's
// channels its notifications stopped.
const AlertStorm = "ECPAlertStorm"

// Settings are one project's alert settings, the body of
// GET/PUT /api/v1/projects/{project}/alert-settings.
type Settings struct {
	// Enabled switches the project's alerts on; off means no rules and no
	// route, so nothing fires and nothing is sent.
	Enabled bool `json:"enabled"`
	// TriggerCount is how many consecutive bad evaluations fire an alert,
	// for every rule of the catalogue that sets none of its own.
	TriggerCount int `json:"triggerCount"`
	// RecoveryCount is how many consecutive good evaluations resolve it,
	// likewise.
	RecoveryCount int `json:"recoveryCount"`
	// Severity is the severity label of the alerts of every rule that
	// sets none of its own.
	Severity string `json:"severity"`
	// EMQXAlertPush forwards EMQX's own alarms as alerts too: it is the
	// on/off switch of the catalogue's emqxAlarm rule.
	EMQXAlertPush bool `json:"emqxAlertPush"`
	// Rules is the rule catalogue (rules.Catalogue), by rule id. A rule
	// left out has its default; settings without the member at all, as
	// ecp stored them before the catalogue, mean what they meant then
	// (see Catalogue). Read them through Catalogue.
	Rules map[string]RuleSettings `json:"rules,omitempty"`
	// CriticalOnly sends only alerts of severity critical to Emails and
	// Webhooks; every alert still reaches ecp's lists, and test
	// notifications and the storm notice go out whatever their severity.
	CriticalOnly bool `json:"criticalOnly"`
	// Emails receive every alert of the project and its resolution.
	Emails []string `json:"emails"`
	// Webhooks receive Alertmanager's webhook payload (version 4), or
	// their template rendered per alert (see notify.go).
	Webhooks []Webhook `json:"webhooks"`
	// StormThreshold is how many new alerts within StormWindow stop the
	// project's notifications until an admin clears the storm (ecp/alerts
	// counts them); 0 in a body or record means DefaultStormThreshold.
	StormThreshold int `json:"stormThreshold"`
	// Storm is set by ecp/alerts while the project is in an alert storm:
	// its route sends only the storm notice. Never part of the API body.
	Storm bool `json:"-"`
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

// RuleSettings are one catalogue rule's settings. Zero counts and an empty
// severity mean the project's (Settings.TriggerCount, ...), so settings
// saved before the catalogue keep their meaning when those change.
type RuleSettings struct {
	Enabled bool `json:"enabled"`
	// Threshold is in the rule's unit (rules.Threshold); nil means the
	// rule's default, and a rule without a threshold must leave it out.
	Threshold     *float64 `json:"threshold,omitempty"`
	Severity      string   `json:"severity,omitempty"`
	TriggerCount  int      `json:"triggerCount,omitempty"`
	RecoveryCount int      `json:"recoveryCount,omitempty"`
}

// Catalogue returns every rule's settings, resolved: each rule of the
// catalogue present, with its threshold. A rule the settings leave out is
// off unless it is on by default (rules.Entry.DefaultOn); settings without
// a "rules" member at all were saved before the catalogue, when alerting
// rendered every rule then known, so those (rules.Entry.Legacy) are on.
// emqxAlarm is on exactly when EMQXAlertPush is: that field stays its
// switch, and what its entry says is ignored.
func (s Settings) Catalogue() map[string]RuleSettings {
	out := make(map[string]RuleSettings, len(rules.Catalogue))
	for _, e := range rules.Catalogue {
		r, ok := s.Rules[e.ID]
		if !ok {
			r = RuleSettings{Enabled: e.DefaultOn}
			if s.Rules == nil {
				r.Enabled = e.Legacy
			}
		}
		if e.Threshold != nil && r.Threshold == nil {
			t := e.Threshold.Default
			r.Threshold = &t
		}
		if e.ID == rules.CatalogueEMQXAlarm {
			r.Enabled = s.EMQXAlertPush
		}
		out[e.ID] = r
	}
	return out
}

// Webhook is one webhook channel.
type Webhook struct {
	URL string `json:"url"`
	// Headers are added to every request to URL; their values are
	// secrets (see Header).
	Headers []Header `json:"headers,omitempty"`
	// Template, when set, is the JSON body posted for each alert, with
	// {{placeholders}} (Placeholders) inside its strings; empty means
	// Alertmanager's payload as is.
	Template string `json:"template,omitempty"`
}

// DefaultSettings are a project's settings until someone saves them:
// alerting off, as ECP ships it, with counts that ride out one bad sample.
func DefaultSettings() Settings {
	return Settings{
		Enabled:        false,
		TriggerCount:   3,
		RecoveryCount:  2,
		Severity:       SeverityWarning,
		StormThreshold: DefaultStormThreshold,
		Emails:         []string{},
		Webhooks:       []Webhook{},
		Rules:          Settings{Rules: map[string]RuleSettings{}}.Catalogue(),
	}
}

// Validate checks settings as a user sent them. The error is an
// *httpapi.Error (400) naming the first wrong field and what would be
// accepted; its "errors" member lists every wrong field the same way
// ({"field", "message"}), so a form can mark them all at once.
func (s Settings) Validate() error {
	var errs httpapi.FieldErrors
	if s.TriggerCount < 1 || s.TriggerCount > MaxCount {
		errs.Add("triggerCount", "triggerCount must be a whole number from 1 to %d, got %d", MaxCount, s.TriggerCount)
	}
	if s.RecoveryCount < 1 || s.RecoveryCount > MaxCount {
		errs.Add("recoveryCount", "recoveryCount must be a whole number from 1 to %d, got %d", MaxCount, s.RecoveryCount)
	}
	if !validSeverity(s.Severity) {
		errs.Add("severity", "severity must be one of %s, got %q", strings.Join(Severities, ", "), s.Severity)
	}
	if len(s.Emails) > MaxEmails {
		// Too many to be worth checking one by one.
		errs.Add("emails", "emails holds at most %d addresses, got %d", MaxEmails, len(s.Emails))
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
				errs.Add(field, "%s must be an e-mail address such as ops@example.com (RFC 5322 addr-spec), got %q", field, e)
			// user@[127.0.0.1] would have the SMTP relay connect to an
			// address of the tenant's choosing, past the notification
			// policy; a recipient names a mail domain.
			case strings.HasSuffix(e, "]"):
				errs.Add(field, "%s must name a mail domain, not an address literal, got %q", field, e)
			case seen[key]:
				errs.Add(field, "%s repeats %q", field, e)
			}
			seen[key] = true
		}
	}
	if len(s.Webhooks) > MaxWebhooks {
		errs.Add("webhooks", "webhooks holds at most %d entries, got %d", MaxWebhooks, len(s.Webhooks))
	} else {
		seen := map[string]bool{}
		for i, w := range s.Webhooks {
			field := fmt.Sprintf("webhooks[%d].url", i)
			if err := validWebhookURL(w.URL); err != nil {
				errs.Add(field, "%s must be an absolute http:// or https:// URL with a host%s, got %q", field, err, w.URL)
			} else if seen[w.URL] {
				errs.Add(field, "%s repeats %q", field, w.URL)
			}
			seen[w.URL] = true
			validateHeaders(fmt.Sprintf("webhooks[%d]", i), w.Headers, &errs)
			validateTemplate(fmt.Sprintf("webhooks[%d].template", i), w.Template, &errs)
		}
	}
	if s.StormThreshold != 0 && (s.StormThreshold < MinStormThreshold || s.StormThreshold > MaxStormThreshold) {
		errs.Add("stormThreshold", "stormThreshold must be a whole number from %d to %d (or left out for %d), got %d", MinStormThreshold, MaxStormThreshold, DefaultStormThreshold, s.StormThreshold)
	}
	validateRules(s.Rules, &errs)
	return errs.Err()
}

// validateRules checks the catalogue as a user sent it, rule by rule in
// catalogue order, then the ids that are not in it.
func validateRules(rs map[string]RuleSettings, errs *httpapi.FieldErrors) {
	for _, id := range slices.Sorted(maps.Keys(rs)) {
		if _, ok := rules.CatalogueEntry(id); !ok {
			errs.Add("rules."+id, "rules.%s is not a rule of the catalogue; want one of %s", id, strings.Join(rules.CatalogueIDs(), ", "))
		}
	}
	for _, e := range rules.Catalogue {
		r, ok := rs[e.ID]
		if !ok {
			continue
		}
		field := "rules." + e.ID + "."
		switch t := e.Threshold; {
		case t == nil && r.Threshold != nil:
			errs.Add(field+"threshold", "%sthreshold must be left out: %s has no threshold", field, e.ID)
		case t != nil && r.Threshold != nil && !(*r.Threshold >= t.Min && *r.Threshold <= t.Max):
			errs.Add(field+"threshold", "%sthreshold must be from %v to %v (%s), got %v", field, t.Min, t.Max, t.Unit, *r.Threshold)
		}
		if r.Severity != "" && !validSeverity(r.Severity) {
			errs.Add(field+"severity", "%sseverity must be one of %s, or left out for the project's, got %q", field, strings.Join(Severities, ", "), r.Severity)
		}
		if r.TriggerCount < 0 || r.TriggerCount > MaxCount {
			errs.Add(field+"triggerCount", "%striggerCount must be a whole number from 1 to %d, or left out for the project's, got %d", field, MaxCount, r.TriggerCount)
		}
		if r.RecoveryCount < 0 || r.RecoveryCount > MaxCount {
			errs.Add(field+"recoveryCount", "%srecoveryCount must be a whole number from 1 to %d, or left out for the project's, got %d", field, MaxCount, r.RecoveryCount)
		}
	}
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
