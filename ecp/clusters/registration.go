package clusters

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ecpio/ecp/ecp/agentdownloads"
)

// Registration is the reply of POST /clusters/{id}/registration: the token
// (shown once) and the commands that install and register the agent.
type Registration struct {
	ClusterID string    `json:"clusterId"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
	EcpURL    string    `json:"ecpUrl"`
	// Placeholders lists the words of the register command the operator
	// replaces (the console fills them in the browser, so the EMQX
	// credentials never travel to ecp).
	Placeholders []string `json:"placeholders"`
	// MaxConnections is what the agent will cap EMQX at once registered,
	// and Note says so in words: a new entry starts low, and a busy
	// cluster would start refusing clients the moment it is bound.
	MaxConnections int       `json:"maxConnections"`
	Note           string    `json:"note"`
	Commands       []Command `json:"commands"`
	// SystemdUnit is where ecp serves the agent's systemd unit, to run it
	// as a service rather than with `run &` (its header says how).
	SystemdUnit string `json:"systemdUnit"`
}

// Command is the guide for one architecture.
type Command struct {
	OS       string `json:"os"`
	Arch     string `json:"arch"`
	Download string `json:"download"`
	Chmod    string `json:"chmod"`
	Run      string `json:"run"`
	Register string `json:"register"`
	// Script is the steps above, ready to paste.
	Script string `json:"script"`
}

// Placeholders of the register command.
const (
	PlaceholderUsername     = "<EMQX_USERNAME>"
	PlaceholderDashboardURL = "<EMQX_DASHBOARD_URL>"
	PlaceholderAPIURL       = "<EMQX_API_URL>"
)

// registration issues a new single-use token for the entry (revoking any
// agent bound to it: this is also the re-register path) and renders the
// guide.
func (api *API) issue(ctx context.Context, e entry, _ struct{}) (Registration, error) {
	spec := e.spec
	// The service URL the entry shows: the operator's, or the dashboard
	// URL its last agent registered with (a transfer drops a hand-set one).
	st, err := api.fleet.Status(ctx, spec.ID)
	if err != nil {
		return Registration{}, fmt.Errorf("read status of cluster %s: %w", spec.ID, err)
	}
	token, expires, err := api.fleet.IssueRegistration(ctx, spec.ID, time.Duration(api.tokenTTL.Load()))
	if err != nil {
		return Registration{}, fmt.Errorf("issue registration token for cluster %s: %w", spec.ID, err)
	}
	api.logger.Info("registration token issued", "cluster", spec.ID, "expiresAt", expires)
	dashboardURL, apiURL := PlaceholderDashboardURL, PlaceholderAPIURL
	placeholders := []string{PlaceholderUsername}
	if known := serviceURL(spec, st); known != "" {
		// EMQX serves its REST API on the dashboard listener, so the
		// service URL is the right default for both.
		dashboardURL, apiURL = known, known
	} else {
		placeholders = append(placeholders, PlaceholderDashboardURL, PlaceholderAPIURL)
	}
	reg := Registration{
		ClusterID: spec.ID, Token: token.Reveal(), ExpiresAt: expires.UTC(), EcpURL: api.opts.ExternalURL,
		Placeholders: placeholders, MaxConnections: spec.MaxConnections, SystemdUnit: api.opts.ExternalURL + agentdownloads.UnitPath,
		Note: fmt.Sprintf("Once registered, the agent caps EMQX at this entry's max connections, %d: beyond that EMQX refuses new clients. "+
			"If the cluster serves more, raise it first (PUT /api/v1/clusters/%s/max-connections).", spec.MaxConnections, spec.ID),
	}
	for _, arch := range Arches {
		c := Command{
			OS:       "linux",
			Arch:     arch,
			Download: "curl -fsSL -o agent-exporter " + shellQuote(api.opts.ExternalURL+"/downloads/agent-exporter/linux/"+arch),
			Chmod:    "chmod +x agent-exporter",
			Run:      "./agent-exporter run &",
			// No --password: the agent asks for it without echo, so it
			// stays out of shell history and process lists.
			Register: strings.Join([]string{
				"./agent-exporter register",
				"--ecp-url " + shellQuote(api.opts.ExternalURL),
				"--token " + shellQuote(token.Reveal()),
				"--username " + shellQuote(PlaceholderUsername),
				"--dashboard-url " + shellQuote(dashboardURL),
				"--api-url " + shellQuote(apiURL),
			}, " "),
		}
		// register talks to the running daemon, which needs a moment to
		// open its control API after `run` went to the background.
		c.Script = strings.Join([]string{c.Download, c.Chmod, c.Run, "sleep 2", c.Register}, "\n")
		reg.Commands = append(reg.Commands, c)
	}
	return reg, nil
}

// shellQuote quotes s for a POSIX shell; plain words stay unquoted so the
// commands read naturally.
func shellQuote(s string) string {
	plain := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r)
	}
	if s != "" && strings.IndexFunc(s, func(r rune) bool { return !plain(r) }) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
