package alerting

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	amconfig "github.com/prometheus/alertmanager/config"
	amtemplate "github.com/prometheus/alertmanager/template"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/ecpio/ecp/alertmanager"
	"github.com/ecpio/ecp/rules"
)

// RenderRules renders and validates one project's rule file. Settings must
// be enabled; a disabled project has no file.
func RenderRules(project string, s Settings, o Options) ([]byte, error) {
	b, err := renderRules(project, s, o)
	if err != nil {
		return nil, err
	}
	if err := ValidateRules(b); err != nil {
		return nil, fmt.Errorf("rendering rules of project %q: %w", project, err)
	}
	return b, nil
}

// renderRules is RenderRules without the validation.
func renderRules(project string, s Settings, o Options) ([]byte, error) {
	if !s.Enabled {
		return nil, fmt.Errorf("rendering rules of project %q: alerting is disabled", project)
	}
	on := map[string]rules.RuleParams{}
	for id, r := range s.Catalogue() {
		if !r.Enabled {
			continue
		}
		rp := rules.RuleParams{Severity: r.Severity, TriggerCount: r.TriggerCount, RecoveryCount: r.RecoveryCount}
		if r.Threshold != nil {
			rp.Threshold = *r.Threshold
		}
		on[id] = rp
	}
	f, err := rules.Project(rules.Params{
		Project:          project,
		Interval:         o.Interval,
		TriggerCount:     s.TriggerCount,
		RecoveryCount:    s.RecoveryCount,
		Severity:         s.Severity,
		Rules:            on,
		ExternalURL:      o.ExternalURL,
		ProjectName:      s.Names.Project,
		OrganizationName: s.Names.Organization,
		Clusters:         s.Names.Clusters,
	})
	if err != nil {
		return nil, fmt.Errorf("rendering rules of project %q: %w", project, err)
	}
	b, err := rules.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("rendering rules of project %q: %w", project, err)
	}
	return b, nil
}

// ValidateRules checks a rule file the way Prometheus 2.42 loads it:
// strict YAML, valid PromQL and templates (rulefmt), classic label names,
// and none of the group fields newer Prometheus versions added. rulefmt is
// the 3.x one, which accepts group `labels` and `query_offset`; 2.42 refuses
// them, so they are refused here too.
func ValidateRules(b []byte) error {
	groups, errs := rulefmt.Parse(b, false, model.LegacyValidation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		return fmt.Errorf("invalid rule file: %w", errors.Join(errs...))
	}
	for _, g := range groups.Groups {
		if len(g.Labels) > 0 {
			return fmt.Errorf("invalid rule file: group %q: group labels need Prometheus 2.54+, ecp targets 2.42", g.Name)
		}
		if g.QueryOffset != nil {
			return fmt.Errorf("invalid rule file: group %q: query_offset needs Prometheus 2.53+, ecp targets 2.42", g.Name)
		}
	}
	return nil
}

// Receiver and route names in the Alertmanager configuration.
const (
	// ReceiverNone takes what no project route wants: nothing is sent.
	ReceiverNone = "ecp-none"
	// ReceiverECP is ecp's own webhook, which receives every alert for the
	// active and history lists.
	ReceiverECP = "ecp"
	// receiverProjectPrefix + project id names a project's receiver.
	receiverProjectPrefix = "project-"
	// receiverTestSuffix ends the name of a project's receiver for test
	// notifications.
	receiverTestSuffix = "-test"
)

// LabelTest marks the alerts of "send test notification" (its value is the
// test's id): they reach the project's channels through the project's test
// receiver, which sends no resolution, and never ecp's lists.
const LabelTest = "ecp_test"

// ecpRepeatInterval is repeat_interval on ecp's own route: the repeat lets
// ecp rebuild its active list after a restart without asking Alertmanager.
const ecpRepeatInterval = "1h"

// ProjectReceiver is the name of a project's receiver.
func ProjectReceiver(project string) string { return receiverProjectPrefix + project }

// amFile is the subset of Alertmanager's configuration ecp writes, with the
// field names Alertmanager 0.25 knows. It is generated here rather than
// through the alertmanager/config types, whose secrets marshal as
// "<secret>".
type amFile struct {
	Global    amGlobal `yaml:"global"`
	Templates []string `yaml:"templates,omitempty"`
	Route     amRoute  `yaml:"route"`
	Receivers []amRecv `yaml:"receivers"`
}

type amGlobal struct {
	// ResolveTimeout resolves an alert that came without an end time
	// after this long without an update.
	ResolveTimeout   string `yaml:"resolve_timeout"`
	SMTPSmarthost    string `yaml:"smtp_smarthost,omitempty"`
	SMTPFrom         string `yaml:"smtp_from,omitempty"`
	SMTPAuthUsername string `yaml:"smtp_auth_username,omitempty"`
	SMTPAuthPassword string `yaml:"smtp_auth_password,omitempty"`
	SMTPRequireTLS   bool   `yaml:"smtp_require_tls"`
}

type amRoute struct {
	Receiver       string    `yaml:"receiver"`
	Matchers       []string  `yaml:"matchers,omitempty"`
	GroupBy        []string  `yaml:"group_by,omitempty"`
	GroupWait      string    `yaml:"group_wait,omitempty"`
	GroupInterval  string    `yaml:"group_interval,omitempty"`
	RepeatInterval string    `yaml:"repeat_interval,omitempty"`
	Continue       bool      `yaml:"continue,omitempty"`
	Routes         []amRoute `yaml:"routes,omitempty"`
}

type amRecv struct {
	Name           string      `yaml:"name"`
	EmailConfigs   []amEmail   `yaml:"email_configs,omitempty"`
	WebhookConfigs []amWebhook `yaml:"webhook_configs,omitempty"`
}

type amEmail struct {
	To           string            `yaml:"to"`
	SendResolved bool              `yaml:"send_resolved"`
	Headers      map[string]string `yaml:"headers,omitempty"`
	HTML         string            `yaml:"html,omitempty"`
	Text         string            `yaml:"text,omitempty"`
}

// newEmail is one recipient's e-mail config, with ecp's templates
// (alertmanager/email.tmpl): subject and bodies name organization, project,
// cluster, every object of the group and the link back to ecp.
func newEmail(to string, sendResolved bool) amEmail {
	use := func(name string) string { return `{{ template "` + name + `" . }}` }
	return amEmail{To: to, SendResolved: sendResolved,
		Headers: map[string]string{"Subject": use(alertmanager.EmailSubject)},
		HTML:    use(alertmanager.EmailHTML),
		Text:    use(alertmanager.EmailText)}
}

type amWebhook struct {
	URL          string        `yaml:"url"`
	SendResolved bool          `yaml:"send_resolved"`
	MaxAlerts    int           `yaml:"max_alerts,omitempty"`
	HTTPConfig   *amHTTPConfig `yaml:"http_config,omitempty"`
}

type amHTTPConfig struct {
	Authorization *amAuthorization `yaml:"authorization,omitempty"`
	// FollowRedirects is false on tenants' webhooks: a redirect would take
	// Alertmanager past the destination policy ecp checked.
	FollowRedirects *bool `yaml:"follow_redirects,omitempty"`
}

type amAuthorization struct {
	Type        string `yaml:"type"`
	Credentials string `yaml:"credentials"`
}

// RenderAlertmanager renders and validates Alertmanager's configuration for
// every enabled project in projects (ids must be valid; see
// rules.ValidProjectID). The result may hold the SMTP password and ecp's
// webhook token: write it with mode 0600 and never log it.
func RenderAlertmanager(projects map[string]Settings, o Options) ([]byte, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("rendering alertmanager config: %w", err)
	}
	f := amFile{
		Global: amGlobal{
			ResolveTimeout:   resolveTimeout(o.Routing.ResolveTimeout),
			SMTPSmarthost:    o.SMTP.Smarthost,
			SMTPFrom:         o.SMTP.From,
			SMTPAuthUsername: o.SMTP.Username,
			SMTPAuthPassword: o.SMTP.Password.Reveal(),
			SMTPRequireTLS:   o.SMTP.RequireTLS,
		},
		Route: amRoute{
			Receiver: ReceiverNone,
			// One fault is one notification: a broken connector fires
			// for the connector, its actions and the rules that use
			// them, all in one cluster, and all arrive within the group
			// wait; the e-mail lists each of them.
			GroupBy:        []string{rules.LabelProject, rules.LabelCluster},
			GroupWait:      duration(o.Routing.GroupWait),
			GroupInterval:  duration(o.Routing.GroupInterval),
			RepeatInterval: duration(o.Routing.RepeatInterval),
		},
		Receivers: []amRecv{{Name: ReceiverNone}},
	}

	// No inhibit rules: an inhibited alert reaches no receiver, ecp's
	// included, and ecp's lists must show every alert.
	//
	// ecp first and with continue, so it receives every alert whatever the
	// project routes below do. Every alert its own group ("...") and no
	// wait: the active list should not lag behind Alertmanager.
	ecp := amWebhook{URL: o.WebhookURL, SendResolved: true}
	if !o.WebhookToken.IsZero() {
		ecp.HTTPConfig = &amHTTPConfig{Authorization: &amAuthorization{Type: "Bearer", Credentials: o.WebhookToken.Reveal()}}
	}
	f.Route.Routes = append(f.Route.Routes, amRoute{
		Receiver:       ReceiverECP,
		GroupBy:        []string{"..."},
		GroupWait:      "0s",
		GroupInterval:  duration(o.Routing.ECPGroupInterval),
		RepeatInterval: ecpRepeatInterval,
		Continue:       true,
	})
	f.Receivers = append(f.Receivers, amRecv{Name: ReceiverECP, WebhookConfigs: []amWebhook{ecp}})

	for _, id := range sortedIDs(projects) {
		s := projects[id]
		if s.Enabled && len(s.Emails) > 0 && len(f.Templates) == 0 {
			// Relative: Alertmanager resolves it against the directory
			// of its configuration file, where Apply writes it.
			f.Templates = []string{alertmanager.EmailTemplateFile}
		}
		if !s.Enabled || (len(s.Emails) == 0 && len(s.Webhooks) == 0) {
			continue
		}
		if !rules.ValidProjectID(id) {
			return nil, fmt.Errorf("rendering alertmanager config: project id %q is not usable as a label value and file name", id)
		}
		if len(s.Emails) > 0 && (o.SMTP.Smarthost == "" || o.SMTP.From == "") {
			return nil, fmt.Errorf("rendering alertmanager config: project %q: %w", id, ErrNoSMTP)
		}
		r, test := projectReceiver(ProjectReceiver(id), id, s, o, true), projectReceiver(ProjectReceiver(id)+receiverTestSuffix, id, s, o, false)
		f.Receivers = append(f.Receivers, r, test)
		testRoute := amRoute{
			Receiver:  test.Name,
			Matchers:  []string{LabelTest + `=~".+"`},
			GroupBy:   []string{"..."},
			GroupWait: "0s",
		}
		// A test of one channel carries its key (LabelTestChannel) and
		// reaches a receiver holding that channel alone.
		for _, ch := range channels(id, s, o) {
			f.Receivers = append(f.Receivers, ch.recv)
			testRoute.Routes = append(testRoute.Routes, amRoute{Receiver: ch.recv.Name,
				Matchers: []string{fmt.Sprintf("%s=%q", LabelTestChannel, ch.key)}})
		}
		route := amRoute{
			Receiver: r.Name,
			Matchers: []string{fmt.Sprintf("%s=%q", rules.LabelProject, id)},
			// A test notification is one message: its receiver sends no
			// resolution when Alertmanager resolves it later, and it
			// goes out at once, alone.
			Routes: []amRoute{testRoute},
		}
		if s.Storm {
			// In a storm the project's alerts reach ecp's lists (the
			// route above) and nobody else; the storm notice goes out
			// once, like a test notification.
			route.Receiver = ReceiverNone
			route.Routes = append(route.Routes, amRoute{
				Receiver:  test.Name,
				Matchers:  []string{fmt.Sprintf("%s=%q", model.AlertNameLabel, AlertStorm)},
				GroupBy:   []string{"..."},
				GroupWait: "0s",
			})
		} else if s.CriticalOnly {
			// Only critical alerts reach the channels; the others end
			// at ReceiverNone (ecp's own route above has them already).
			route.Receiver = ReceiverNone
			route.Routes = append(route.Routes, amRoute{
				Receiver: r.Name,
				Matchers: []string{fmt.Sprintf("%s=%q", rules.LabelSeverity, SeverityCritical)},
			})
		}
		f.Route.Routes = append(f.Route.Routes, route)
	}

	var b strings.Builder
	b.WriteString("# Generated by ecp from every project's alert settings. Do not edit: ecp rewrites this file.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("rendering alertmanager config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("rendering alertmanager config: %w", err)
	}
	out := []byte(b.String())
	if err := ValidateAlertmanager(out); err != nil {
		return nil, fmt.Errorf("rendering alertmanager config: %w", err)
	}
	return out, nil
}

// projectReceiver is a project's receiver with its channels.
func projectReceiver(name, project string, s Settings, o Options, sendResolved bool) amRecv {
	r := amRecv{Name: name}
	for _, e := range s.Emails {
		// One config per recipient: nobody sees the others' addresses.
		r.EmailConfigs = append(r.EmailConfigs, newEmail(e, sendResolved))
	}
	for _, w := range s.Webhooks {
		r.WebhookConfigs = append(r.WebhookConfigs, newWebhook(project, w, o, sendResolved))
	}
	return r
}

// newWebhook is one webhook's config: Alertmanager posts to the webhook
// itself, or to ecp's relay when ecp must add headers or render a template
// (notify.go).
func newWebhook(project string, w Webhook, o Options, sendResolved bool) amWebhook {
	if w.Relayed() {
		c := amWebhook{URL: RelayURL(o.WebhookURL, project, WebhookKey(w.URL)), SendResolved: sendResolved}
		if !o.WebhookToken.IsZero() {
			c.HTTPConfig = &amHTTPConfig{Authorization: &amAuthorization{Type: "Bearer", Credentials: o.WebhookToken.Reveal()}}
		}
		return c
	}
	noRedirects := false
	return amWebhook{URL: w.URL, SendResolved: sendResolved, HTTPConfig: &amHTTPConfig{FollowRedirects: &noRedirects}}
}

// LabelTestChannel marks a test notification of one channel: its value is
// the channel's key (EmailKey, WebhookKey), and the test reaches that
// channel alone.
const LabelTestChannel = "ecp_test_channel"

// channel is one channel's own test receiver and its key.
type channel struct {
	key  string
	recv amRecv
}

// channels lists a receiver per channel of the project, for per-channel
// tests: they send no resolution, as the project's test receiver.
func channels(project string, s Settings, o Options) []channel {
	prefix := ProjectReceiver(project) + receiverTestSuffix + "-"
	var out []channel
	for _, e := range s.Emails {
		k := EmailChannel(e)
		out = append(out, channel{key: k, recv: amRecv{Name: prefix + k, EmailConfigs: []amEmail{newEmail(e, false)}}})
	}
	for _, w := range s.Webhooks {
		k := WebhookChannel(w.URL)
		out = append(out, channel{key: k, recv: amRecv{Name: prefix + k, WebhookConfigs: []amWebhook{newWebhook(project, w, o, false)}}})
	}
	return out
}

// EmailChannel is the LabelTestChannel value of an e-mail recipient.
func EmailChannel(addr string) string { return "e" + EmailKey(addr) }

// WebhookChannel is the LabelTestChannel value of a webhook.
func WebhookChannel(url string) string { return "w" + WebhookKey(url) }

// DefaultResolveTimeout is Alertmanager's resolve_timeout unless
// Routing.ResolveTimeout is set.
const DefaultResolveTimeout = 5 * time.Minute

func resolveTimeout(d model.Duration) string {
	if d == 0 {
		return model.Duration(DefaultResolveTimeout).String()
	}
	return d.String()
}

// ErrNoSMTP is returned for a project with e-mail recipients when ecp has
// no SMTP smarthost and sender.
var ErrNoSMTP = errors.New("e-mail needs ecp started with --smtp.smarthost and --smtp.from")

// ValidateAlertmanager loads an Alertmanager configuration with
// Alertmanager's own loader: strict YAML, receivers that exist, a valid
// route tree. Its messages name fields, not the secrets' values.
func ValidateAlertmanager(b []byte) error {
	if _, err := amconfig.Load(string(b)); err != nil {
		return fmt.Errorf("invalid alertmanager config: %w", err)
	}
	return nil
}

// EmailTemplates parses ecp's e-mail templates with Alertmanager's own
// template package, as Alertmanager does when it loads them.
func EmailTemplates() (*amtemplate.Template, error) {
	t, err := amtemplate.New()
	if err != nil {
		return nil, fmt.Errorf("alertmanager templates: %w", err)
	}
	if err := t.Parse(bytes.NewReader(alertmanager.EmailTemplate)); err != nil {
		return nil, fmt.Errorf("parse %s: %w", alertmanager.EmailTemplateFile, err)
	}
	return t, nil
}

func duration(d model.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}
