// Package alertmanager holds the files ecp gives Alertmanager beside the
// configuration it renders (ecp/alerting): the alert e-mail templates.
// README.md here describes the configuration.
package alertmanager

import _ "embed"

// EmailTemplateFile is the name ecp writes EmailTemplate under, beside
// Alertmanager's configuration file. The configuration names it
// relatively, and Alertmanager resolves it against the configuration
// file's directory, so it works wherever that directory is mounted.
const EmailTemplateFile = "ecp-email.tmpl"

// Names of the templates in EmailTemplate that e-mail receivers use.
const (
	EmailSubject = "ecp.email.subject"
	EmailHTML    = "ecp.email.html"
	EmailText    = "ecp.email.text"
)

// EmailTemplate is email.tmpl: subject and bodies naming project, cluster,
// the object (rule, connector, action, node or alarm) and the link back to
// ecp.
//
//go:embed email.tmpl
var EmailTemplate []byte
