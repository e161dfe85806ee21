// Package openapi is ecp's OpenAPI 3 document, served at
// /api/v1/openapi.json. It is written by hand next to the routes it
// describes; a test walks the router and fails when a route is missing
// here, so the document cannot fall behind the API.
package openapi

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/mux"
	"github.com/prometheus/common/model"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/ecp/alerts"
	ecpauth "github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/clusters"
	"github.com/ecpio/ecp/ecp/destpolicy"
	"github.com/ecpio/ecp/ecp/fleet"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/logs"
	"github.com/ecpio/ecp/ecp/logstore"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/ecp/remotewrite"
	"github.com/ecpio/ecp/ecp/tenancy"
	"github.com/ecpio/ecp/internal/version"
	"github.com/ecpio/ecp/rules"
)

// Path is where the document is served.
const Path = "/api/v1/openapi.json"

// Operation is one method on one path.
type Operation struct {
	Method  string
	Path    string
	Tag     string
	Summary string
	// Public operations need no bearer token.
	Public bool
	// Request names the component schema of the JSON body, if any.
	Request string
	// RequestOptional says the body may be left out.
	RequestOptional bool
	// Responses maps status codes to the component schema of the reply
	// ("" for none); error statuses are added from Errors.
	Responses map[int]string
	// Errors are the error statuses the operation can answer.
	Errors []int
	// Query are the query parameters the operation takes.
	Query []Param
	// Body says the operation reads a request body that Request does not
	// name (the agent's and Alertmanager's); 408 is documented for every
	// operation that reads one.
	Body bool
	// BodyLimit is the route's bound on the request body (413 beyond it),
	// httpapi.DefaultBodyLimit when 0: httpapi bounds every route's body.
	BodyLimit int64
}

// The document's info.license: the repository's LICENSE file.
const (
	LicenseName = "Apache-2.0"
	LicenseURL  = "https://www.apache.org/licenses/LICENSE-2.0"
)

// Param is one query parameter.
type Param struct {
	Name        string
	Description string
	Schema      map[string]any
}

// clusterListQuery are the paging and filters of both cluster lists.
var clusterListQuery = []Param{
	{Name: "limit", Description: fmt.Sprintf("Entries per page, 1 to %d; %d when absent.", clusters.MaxListLimit, clusters.DefaultListLimit), Schema: map[string]any{"type": "integer", "minimum": 1, "maximum": clusters.MaxListLimit, "default": clusters.DefaultListLimit}},
	{Name: "pageToken", Description: "nextPageToken or prevPageToken of the previous reply, with the same q and state (400 naming pageToken otherwise); limit may change.", Schema: str},
	{Name: "q", Description: "A part of the cluster name, whatever the case, or the cluster's whole id.", Schema: map[string]any{"type": "string", "maxLength": clusters.MaxQueryRunes}},
	{Name: "state", Description: "Only clusters in this state.", Schema: map[string]any{"type": "string", "enum": clusterStates}},
}

// Enums, from the constants of the packages that own them.
var (
	clusterStates = []string{fleet.StateCreated, fleet.StateRegistering, fleet.StateRunning, fleet.StateAbnormal}
	roles         = []string{tenancy.RoleSystemAdmin, tenancy.RoleOrgAdmin, tenancy.RoleProjectAdmin, tenancy.RoleProjectViewer}
	// stateReasons are the codes ecp sets and those the agent reports.
	stateReasons = []string{
		fleet.ReasonNotRegistered, fleet.ReasonAwaitingRegistration, fleet.ReasonTokenExpired, fleet.ReasonAwaitingFirstReport,
		fleet.ReasonAgentSilent, fleet.ReasonAgentIntervalTooLong, fleet.ReasonClusterManagedElsewhere,
		agentproto.ProblemEMQXUnreachable, agentproto.ProblemEMQXAuthFailed, agentproto.ProblemQuotaApplyFailed, agentproto.ProblemLicenceUnsupported,
		agentproto.ProblemEMQXTimeout,
	}
	deliveries    = []string{alerts.DeliveryApplied, alerts.DeliveryPending, alerts.DeliveryPartial, alerts.DeliveryFailed, alerts.DeliveryNotConfigured}
	alertStates   = []string{alerts.StateActive, alerts.StateHistory}
	silenceStates = []string{alerts.SilenceActive, alerts.SilencePending, alerts.SilenceExpired}
	stormStates   = []string{alerts.StormNormal, alerts.StormActive}
	endReasons    = []string{alerts.EndResolved, alerts.EndStale, alerts.EndGone, alerts.EndRemoved}
	quotaScopes   = []string{quota.QuotaProject, quota.QuotaOrg, quota.QuotaLicence}
	receivers     = []string{logstore.TypeElasticsearch, logstore.TypeVictoriaLogs}
)

// Operations lists every documented operation.
func Operations() []Operation {
	const api = "/api/v1"
	auth := []int{400, 401}
	tenant := []int{400, 401, 403, 404}
	return []Operation{
		{Method: "POST", Path: api + "/login", Tag: "auth", Summary: "Log in; returns a bearer token and its expiry.", Public: true, Request: "LoginRequest", Responses: map[int]string{200: "LoginResponse"}, Errors: auth, BodyLimit: ecpauth.MaxLoginBodyBytes},
		{Method: "GET", Path: api + "/users", Tag: "auth", Summary: "List users (a system admin sees all, anyone else only themselves).", Responses: map[int]string{200: "UserList"}, Errors: auth},
		{Method: "POST", Path: api + "/users", Tag: "auth", Summary: "Create a user (system admin).", Request: "UserRequest", Responses: map[int]string{201: "User"}, Errors: []int{400, 401, 403, 409}},
		{Method: "PUT", Path: api + "/users/{username}/password", Tag: "auth", Summary: "Change a password: your own (with currentPassword) or, as system admin, anyone's. The user's other sessions end.", Request: "PasswordRequest", Responses: map[int]string{204: ""}, Errors: []int{400, 401, 404}},
		{Method: "DELETE", Path: api + "/users/{username}", Tag: "auth", Summary: "Delete a user with their role bindings, API tokens and sessions (system admin).", Responses: map[int]string{204: ""}, Errors: []int{401, 403, 404, 409}},
		{Method: "GET", Path: api + "/api-tokens", Tag: "auth", Summary: "List the caller's API tokens (metadata only).", Responses: map[int]string{200: "APITokenList"}, Errors: auth},
		{Method: "POST", Path: api + "/api-tokens", Tag: "auth", Summary: "Create an API token acting as the caller; the token is shown once.", Request: "APITokenRequest", Responses: map[int]string{201: "APITokenCreated"}, Errors: auth},
		{Method: "DELETE", Path: api + "/api-tokens/{id}", Tag: "auth", Summary: "Revoke an API token (its owner or a system admin).", Responses: map[int]string{204: ""}, Errors: []int{401, 404}},
		{Method: "GET", Path: api + "/orgs", Tag: "tenancy", Summary: "List the organizations the caller can see.", Responses: map[int]string{200: "OrgList"}, Errors: auth},
		{Method: "POST", Path: api + "/orgs", Tag: "tenancy", Summary: "Create an organization (system admin).", Request: "NameRequest", Responses: map[int]string{201: "Org"}, Errors: []int{400, 401, 403, 409}},
		{Method: "GET", Path: api + "/orgs/{org}", Tag: "tenancy", Summary: "One organization.", Responses: map[int]string{200: "Org"}, Errors: []int{401, 404}},
		{Method: "GET", Path: api + "/projects/{project}", Tag: "tenancy", Summary: "One project.", Responses: map[int]string{200: "Project"}, Errors: []int{401, 404}},
		{Method: "GET", Path: api + "/orgs/{org}/projects", Tag: "tenancy", Summary: "List the organization's projects the caller can see.", Responses: map[int]string{200: "ProjectList"}, Errors: tenant},
		{Method: "POST", Path: api + "/orgs/{org}/projects", Tag: "tenancy", Summary: "Create a project (org admin).", Request: "NameRequest", Responses: map[int]string{201: "Project"}, Errors: []int{400, 401, 403, 404, 409}},
		{Method: "GET", Path: api + "/projects", Tag: "tenancy", Summary: "List every project the caller can see.", Responses: map[int]string{200: "ProjectList"}, Errors: auth},
		{Method: "GET", Path: api + "/role-bindings", Tag: "tenancy", Summary: "List the caller's bindings and those of what they administer.", Responses: map[int]string{200: "BindingList"}, Errors: auth},
		{Method: "POST", Path: api + "/role-bindings", Tag: "tenancy", Summary: "Grant a role. A system admin may grant one to any user; anyone else only to themselves or to a user holding a role they can see (GET /role-bindings). Any other username, existing or not, is answered alike: 404 NotFound, field username, so usernames cannot be probed.", Request: "BindingRequest", Responses: map[int]string{201: "Binding"}, Errors: []int{400, 401, 403, 404, 409}},
		{Method: "DELETE", Path: api + "/role-bindings", Tag: "tenancy", Summary: "Revoke a role given by its content.", Request: "BindingRequest", Responses: map[int]string{204: ""}, Errors: []int{400, 401, 403, 404, 409}},
		{Method: "DELETE", Path: api + "/role-bindings/{id}", Tag: "tenancy", Summary: "Revoke a role by binding id.", Responses: map[int]string{204: ""}, Errors: []int{401, 403, 404, 409}},
		{Method: "GET", Path: api + "/clusters", Tag: "clusters", Summary: "Every managed cluster the caller can see, across projects, a page at a time in (name, id) order.", Responses: map[int]string{200: "ClusterList"}, Errors: auth, Query: clusterListQuery},
		{Method: "GET", Path: api + "/projects/{project}/clusters", Tag: "clusters", Summary: "The project's managed clusters, a page at a time in (name, id) order.", Responses: map[int]string{200: "ClusterList"}, Errors: tenant, Query: clusterListQuery},
		{Method: "POST", Path: api + "/projects/{project}/clusters", Tag: "clusters", Summary: "Create a managed-cluster entry (max connections " + strconv.Itoa(registry.DefaultMaxConnections) + " from the licence). Names are unique within a project: 409 NameTaken (field name, cluster: the entry that has it).", Request: "ClusterCreate", Responses: map[int]string{201: "Cluster"}, Errors: []int{400, 401, 403, 404, 409, 422}},
		{Method: "GET", Path: api + "/clusters/{id}", Tag: "clusters", Summary: "One managed cluster: its entry and live status.", Responses: map[int]string{200: "Cluster"}, Errors: tenant},
		{Method: "PATCH", Path: api + "/clusters/{id}", Tag: "clusters", Summary: "Edit name, service URL or the log collection switch (project admin). Switching log collection on is refused (400, field logCollection.enabled) when the cluster's agent registered no log directory; the agent follows the switch through its desired state within about 2 s. A name another entry of the project has is refused (409 NameTaken).", Request: "ClusterPatch", Responses: map[int]string{200: "Cluster"}, Errors: []int{400, 401, 403, 404, 409}},
		{Method: "DELETE", Path: api + "/clusters/{id}", Tag: "clusters", Summary: "Delete the entry; its agent is told to unregister and refused from then on.", Responses: map[int]string{204: ""}, Errors: tenant},
		{Method: "POST", Path: api + "/clusters/{id}/registration", Tag: "clusters", Summary: "Issue a new single-use registration token (revoking any bound agent) and the agent commands per architecture. One EMQX cluster has one entry: the agent's registration is refused with 409 ClusterAlreadyManaged (the token stays unused) when another entry manages the same cluster (same cluster name, a node name in common), naming that entry only within the caller's project; an entry that came to share a cluster with an older one turns abnormal with stateReason ClusterManagedElsewhere and its agent stops enforcing max connections.", Responses: map[int]string{201: "Registration"}, Errors: tenant},
		{Method: "POST", Path: api + "/clusters/{id}/transfer", Tag: "clusters", Summary: "Move the cluster to another project the caller administers (of both). A serviceUrl set by hand does not move along: the entry falls back to the dashboard URL its agent registered, unless the request names the serviceUrl to keep (\"\" for the agent's); the reply shows the result. Refused with 409 NameTaken when the target project has an entry of the same name. Series, alerts and log lines carry the new project from the transfer on; those from before stay in the old project (the stores keep what they stored), visible to its members only.", Request: "TransferRequest", Responses: map[int]string{200: "Cluster"}, Errors: []int{400, 401, 403, 404, 409, 422}},
		{Method: "PUT", Path: api + "/clusters/{id}/max-connections", Tag: "clusters", Summary: "Set the cluster's max connections within the licence; 422 with remaining and ceiling when refused.", Request: "MaxConnectionsRequest", Responses: map[int]string{200: "Cluster"}, Errors: []int{400, 401, 403, 404, 422}},
		{Method: "GET", Path: api + "/clusters/{id}/dashboard", Tag: "clusters", Summary: "Login-free jump (project viewer or better): 302 to <serviceUrl>/#/dashboard/overview?login_meta=<base64 JSON> with a fresh EMQX dashboard login made by the cluster's agent (X-Ecp-Dashboard-Login: login_meta), never above the caller's role: an EMQX administrator session for whoever may change the cluster (project, org or system admin), an EMQX viewer session for a project viewer. 403 for a viewer when the agent cannot make a viewer session or answers with another role (an agent older than roles). When the agent does not answer within 5 s, or has none, the plain 302 to the service URL with X-Ecp-Dashboard-Login: none and the reason in X-Ecp-Dashboard-Reason. 409 when the entry has no service URL. Audited.", Responses: map[int]string{302: ""}, Errors: []int{401, 403, 404, 409}},
		{Method: "GET", Path: api + "/projects/{project}/monitoring", Tag: "monitoring", Summary: "Connections, rules, connectors, actions and sources summed over the project's clusters (?cluster= for one), and every abnormal one with a link to its page on the cluster's EMQX dashboard; from each cluster's latest agent report.", Responses: map[int]string{200: "MonitoringOverview"}, Errors: tenant},
		{Method: "GET", Path: api + "/licence", Tag: "licence", Summary: "Total connection quota, per-cluster ceiling, allocated and remaining.", Responses: map[int]string{200: "Licence"}, Errors: []int{401}},
		{Method: "GET", Path: api + "/orgs/{org}/quota", Tag: "licence", Summary: "The organization's connection quota (null: unset, bounded by the licence), what its clusters are allocated, and what remains under it and the licence (members of the organization).", Responses: map[int]string{200: "ScopeQuota"}, Errors: []int{401, 404}},
		{Method: "PUT", Path: api + "/orgs/{org}/quota", Tag: "licence", Summary: "Set (or, with null, remove) the organization's connection quota (system admin). May be set below what is allocated: nothing is taken away, increases are refused until the allocation is back under it.", Request: "QuotaRequest", Responses: map[int]string{200: "ScopeQuota"}, Errors: []int{400, 401, 403, 404}},
		{Method: "GET", Path: api + "/projects/{project}/quota", Tag: "licence", Summary: "The project's connection quota (null: unset, bounded by its organization's), what its clusters are allocated, and what remains under it, its organization's and the licence (project viewer or better).", Responses: map[int]string{200: "ScopeQuota"}, Errors: []int{401, 404}},
		{Method: "PUT", Path: api + "/projects/{project}/quota", Tag: "licence", Summary: "Set (or, with null, remove) the project's connection quota (org admin of its organization or system admin). Creating, raising or transferring a cluster past it is refused with 422 QuotaExceeded naming the quota and its remaining connections.", Request: "QuotaRequest", Responses: map[int]string{200: "ScopeQuota"}, Errors: []int{400, 401, 403, 404}},
		{Method: "GET", Path: api + "/audit", Tag: "audit", Summary: "Audit log of state-changing calls, newest first (admins; scoped to what they administer).", Responses: map[int]string{200: "AuditList"}, Errors: []int{400, 401, 403}},
		{Method: "GET", Path: api + "/projects/{project}/alert-settings", Tag: "alerts", Summary: "The project's alert settings and whether Prometheus and Alertmanager run them (status.delivery: applied, pending, partial (some webhooks left out: the notification policy refuses where they resolve now), failed, not-configured).", Responses: map[int]string{200: "AlertSettingsReply"}, Errors: tenant},
		{Method: "PUT", Path: api + "/projects/{project}/alert-settings", Tag: "alerts", Summary: "Replace the project's alert settings (project admin); the leading replica renders and reloads Prometheus rules and Alertmanager routes. A webhook whose host resolves to an address the notification policy refuses is 422 DestinationRefused naming the field (webhooks[i].url).", Request: "AlertSettings", Responses: map[int]string{200: "AlertSettingsReply"}, Errors: []int{400, 401, 403, 404, 422}},
		{Method: "POST", Path: api + "/projects/{project}/alert-settings/test", Tag: "alerts", Summary: "Send a test alert through Alertmanager to the project's channels (project admin), or, with a body naming one saved channel ({\"email\"} or {\"webhook\"}: its URL), to that channel alone; 400 naming the field when the channel is not saved; 409 when alerting is off, not applied yet or not configured; 422 DestinationRefused when a webhook tested resolves to a refused address now.", Request: "AlertTestChannel", RequestOptional: true, Responses: map[int]string{202: "AlertTestReply"}, Errors: []int{401, 403, 404, 409, 422, 502}},
		{Method: "GET", Path: api + "/system/notification-policy", Tag: "alerts", Summary: "Where webhooks may point (system admin): allowCidrs and denyCidrs, and ecp's own dependencies, which are refused whatever the lists say.", Responses: map[int]string{200: "NotificationPolicy"}, Errors: []int{401, 403}},
		{Method: "PUT", Path: api + "/system/notification-policy", Tag: "alerts", Summary: "Set the notification policy (system admin). By default loopback, link-local, unspecified, broadcast and multicast addresses are refused; allowCidrs admits some of them, denyCidrs refuses more and wins over allowCidrs; at most " + strconv.Itoa(destpolicy.MaxCIDRs) + " ranges each.", Request: "NotificationPolicyRules", Responses: map[int]string{200: "NotificationPolicy"}, Errors: []int{400, 401, 403}},
		{Method: "GET", Path: api + "/projects/{project}/alerts", Tag: "alerts", Summary: "Active alerts or history (?state=active|history, cluster, severity, rule (the alert name), from, to (RFC 3339, overlapping the alert), limit up to " + strconv.Itoa(alerts.MaxListLimit) + "), newest first.", Responses: map[int]string{200: "AlertList"}, Errors: tenant},
		{Method: "DELETE", Path: api + "/projects/{project}/alerts/history", Tag: "alerts", Summary: "Clear the project's alert history (project admin): the records that ended before a time, or the oldest count by end time; exactly one of before and count. Other projects' history is never touched.", Responses: map[int]string{200: "AlertHistoryCleared"}, Errors: tenant, Query: []Param{
			{Name: "before", Description: "RFC 3339 time: history that ended before it goes.", Schema: map[string]any{"type": "string", "format": "date-time"}},
			{Name: "count", Description: fmt.Sprintf("The oldest records to remove, 1 to %d.", alerts.MaxClearCount), Schema: map[string]any{"type": "integer", "minimum": 1, "maximum": alerts.MaxClearCount}},
		}},
		{Method: "GET", Path: api + "/projects/{project}/custom-alarm-token", Tag: "alerts", Summary: "Whether the project has a custom-alarm token, who made it and when; never the token.", Responses: map[int]string{200: "AlarmToken"}, Errors: []int{401, 403, 404}},
		{Method: "POST", Path: api + "/projects/{project}/custom-alarm-token", Tag: "alerts", Summary: "Create the project's custom-alarm token, or rotate it: the earlier one stops working at once (project admin). The token is shown once; only its hash is stored.", Responses: map[int]string{201: "AlarmTokenCreated"}, Errors: []int{401, 403, 404}},
		{Method: "DELETE", Path: api + "/projects/{project}/custom-alarm-token", Tag: "alerts", Summary: "Revoke the project's custom-alarm token (project admin).", Responses: map[int]string{204: ""}, Errors: []int{401, 403, 404}},
		{Method: "POST", Path: alerts.CustomAlarmsPath, Tag: "alerts", Summary: "Raise or resolve a custom alarm of the project, authenticated by the project's token in the " + alerts.AlarmTokenHeader + " header (no bearer token). ecp adds the project's labels and names and posts it to Alertmanager, so the project's routing, silences, e-mail, webhooks and alert lists apply. An alarm (startsAt, or endsAt of a resolution) more than " + alerts.MaxAlarmAge.String() + " old is 422 AlarmTooOld; names starting with " + strings.Join(alerts.ReservedAlarmNamePrefixes, " or ") + " and the labels alertname, project, cluster, severity, ecp_* and __* are refused; at most " + strconv.Itoa(alerts.CustomAlarmBurst) + " alarms in a burst per project and replica, then 429 with Retry-After. Without endsAt Alertmanager resolves the alarm after its resolve timeout unless it is sent again; resolved true (or endsAt) resolves it now.", Public: true, Request: "CustomAlarm", Responses: map[int]string{202: "CustomAlarmReply"}, Errors: []int{400, 401, 409, 422, 429, 502}, BodyLimit: alerts.MaxCustomAlarmBody},
		{Method: "DELETE", Path: api + "/alerts/{id}", Tag: "alerts", Summary: "Remove an alert from the lists by hand (project admin); one still firing comes back at Alertmanager's next repeat.", Responses: map[int]string{204: ""}, Errors: []int{401, 403, 404}},
		{Method: "GET", Path: api + "/projects/{project}/silences", Tag: "alerts", Summary: "The project's Alertmanager silences, newest first: active and pending ones, or with ?state=expired those Alertmanager still keeps.", Query: []Param{{Name: "state", Description: "active (the default: active and pending) or expired.", Schema: map[string]any{"type": "string", "enum": []string{alerts.SilenceActive, alerts.SilenceExpired}}}}, Responses: map[int]string{200: "SilenceList"}, Errors: []int{400, 401, 404, 409, 502}},
		{Method: "POST", Path: api + "/projects/{project}/silences", Tag: "alerts", Summary: "Silence one alert of the active list (alert), or a cluster, a catalogue rule and labels together, for a duration from " + model.Duration(alerts.MinSilenceDuration).String() + " to " + model.Duration(alerts.MaxSilenceDuration).String() + " with a comment (project admin). ecp creates an Alertmanager silence whose matchers it always scopes to the project; a project label in labels is 400. At most " + strconv.Itoa(alerts.MaxActiveSilences) + " unexpired silences per project (422 " + alerts.CodeSilenceLimit + "); 409 when ecp has no Alertmanager.", Request: "SilenceRequest", Responses: map[int]string{201: "Silence"}, Errors: []int{400, 401, 403, 404, 409, 422, 502}},
		{Method: "DELETE", Path: api + "/silences/{id}", Tag: "alerts", Summary: "Expire a silence (project admin of its project); a silence of a project the caller cannot see, or not made by ecp, is 404; one expired already 409.", Responses: map[int]string{204: ""}, Errors: []int{401, 403, 404, 409, 502}},
		{Method: "GET", Path: api + "/projects/{project}/alerts/storm", Tag: "alerts", Summary: "The project's storm guard: state storm once stormThreshold new alerts arrived within a minute, when its notifications stopped; the one notice (" + alerting.AlertStorm + ") went to the project's channels at noticeAt.", Responses: map[int]string{200: "AlertStorm"}, Errors: tenant},
		{Method: "DELETE", Path: api + "/projects/{project}/alerts/storm", Tag: "alerts", Summary: "Clear the project's alert storm (project admin): notifications resume, and Alertmanager sends what is still firing; 409 when there is no storm.", Responses: map[int]string{204: ""}, Errors: []int{401, 403, 404, 409}},
		{Method: "GET", Path: api + "/system/alerting", Tag: "alerts", Summary: "The alerting wiring and the last apply to Prometheus and Alertmanager, with their errors (system admin).", Responses: map[int]string{200: "AlertingStatus"}, Errors: []int{401, 403}},
		{Method: "POST", Path: api + "/alertmanager/webhook/{project}/{webhook}", Tag: "alerts", Summary: "Alertmanager's relay for a project's webhook with custom headers or a template ({webhook} is the first 16 hex digits of the SHA-256 of its URL): ecp posts Alertmanager's payload, or the template rendered per alert, with the headers, dialling only addresses the notification policy allows. Alerts of another project are 400; a webhook no longer in the settings is 204 and nothing is sent; a webhook that fails or answers non-2xx is 502 DestinationFailed, which Alertmanager retries. Same bearer token as the webhook.", Public: true, Responses: map[int]string{204: ""}, Errors: []int{400, 401, 502}, Body: true, BodyLimit: alerts.MaxWebhookBody},
		{Method: "POST", Path: api + "/alertmanager/webhook", Tag: "alerts", Summary: "Alertmanager's webhook (payload version 4) feeding the alert lists; bearer token generated by ecp and written into Alertmanager's configuration.", Public: true, Responses: map[int]string{204: ""}, Errors: []int{400, 401}, Body: true, BodyLimit: alerts.MaxWebhookBody},
		{Method: "GET", Path: api + "/projects/{project}/logs", Tag: "logs", Summary: "The project's EMQX log lines, newest first (cluster, level, q: text found anywhere in the line, in any case and literally, from, to (RFC 3339), limit up to " + strconv.Itoa(logstore.MaxQueryLimit) + ", pageToken); each line carries the fields the agent parsed from it; 503 LogReceiverNotConfigured while no receiver is set.", Responses: map[int]string{200: "LogPage"}, Errors: []int{400, 401, 404, 502, 503}},
		{Method: "GET", Path: api + "/projects/{project}/logs/count", Tag: "logs", Summary: "How many of the project's log lines match the same filters as the list.", Responses: map[int]string{200: "LogCount"}, Errors: []int{400, 401, 404, 502, 503}},
		{Method: "GET", Path: api + "/system/log-receiver", Tag: "logs", Summary: "The log receiver (system admin); the password is never returned, passwordSet says whether one is held; an empty type means none is set.", Responses: map[int]string{200: "LogReceiver"}, Errors: []int{401, 403}},
		{Method: "PUT", Path: api + "/system/log-receiver", Tag: "logs", Summary: "Set the log receiver (system admin); saved only after its connection test passed (422 LogReceiverTestFailed otherwise). Without a password the stored one is kept for the same URL and user.", Request: "LogReceiver", Responses: map[int]string{200: "LogReceiver"}, Errors: []int{400, 401, 403, 422}},
		{Method: "POST", Path: api + "/system/log-receiver/test", Tag: "logs", Summary: "Test the receiver in the body, or the stored one without a body (system admin); 422 LogReceiverTestFailed says why.", Request: "LogReceiver", Responses: map[int]string{200: "LogReceiverTestReply"}, Errors: []int{400, 401, 403, 422}},
		{Method: "GET", Path: Path, Tag: "meta", Summary: "This document.", Public: true, Responses: map[int]string{200: ""}},
		{Method: "GET", Path: "/downloads/agent-exporter/{os}/{arch}", Tag: "downloads", Summary: "The agent-exporter binary for os/arch (linux amd64, arm64, arm).", Public: true, Responses: map[int]string{200: ""}, Errors: []int{404}},
		{Method: "HEAD", Path: "/downloads/agent-exporter/{os}/{arch}", Tag: "downloads", Summary: "Size and date of the agent-exporter binary.", Public: true, Responses: map[int]string{200: ""}, Errors: []int{404}},
		{Method: "GET", Path: "/downloads/agent-exporter.service", Tag: "downloads", Summary: "The agent's systemd unit (deploy/systemd/agent-exporter.service); its header says how to install it.", Public: true, Responses: map[int]string{200: ""}},
		{Method: "HEAD", Path: "/downloads/agent-exporter.service", Tag: "downloads", Summary: "Size of the agent's systemd unit.", Public: true, Responses: map[int]string{200: ""}},
		{Method: "POST", Path: agentproto.PathRegister, Tag: "agent", Summary: "Agent: register with a single-use registration token (agentproto.RegisterRequest).", Public: true, Responses: map[int]string{200: ""}, Errors: []int{400, 401, 429}, Body: true, BodyLimit: fleet.MaxAgentBody},
		{Method: "POST", Path: agentproto.PathReport, Tag: "agent", Summary: "Agent: report a snapshot; the reply carries the desired state (agent credential).", Public: true, Responses: map[int]string{200: ""}, Errors: []int{400, 401, 429}, Body: true, BodyLimit: fleet.MaxAgentBody},
		{Method: "GET", Path: agentproto.PathDesired, Tag: "agent", Summary: "Agent: long-poll the desired state (after=REV, timeout) (agent credential).", Public: true, Responses: map[int]string{200: "", 204: ""}, Errors: []int{400, 401, 429}},
		{Method: "POST", Path: agentproto.PathWrite, Tag: "agent", Summary: "Agent: Prometheus remote write (agent credential).", Public: true, Responses: map[int]string{204: ""}, Errors: []int{400, 401, 429}, Body: true, BodyLimit: remotewrite.DefaultMaxBodyBytes},
		{Method: "POST", Path: agentproto.PathLogs, Tag: "agent", Summary: "Agent: a batch of EMQX log lines (agent credential); acknowledged only once stored, else 429/503 with Retry-After (LogReceiverNotConfigured, LogStoreUnavailable) and the agent keeps the lines.", Public: true, Responses: map[int]string{200: ""}, Errors: []int{400, 401, 429, 503}, Body: true, BodyLimit: logs.DefaultMaxBatchBytes},
		{Method: "POST", Path: agentproto.PathDashboardSession, Tag: "agent", Summary: "Agent: answer to a dashboard session request of its own cluster from the desired state: {requestId, sealed} (the EMQX login, HPKE-sealed to the request's key) or {requestId, problem}; 404 when no such request is pending (agent credential).", Public: true, Responses: map[int]string{204: ""}, Errors: []int{400, 401, 404}, Body: true},
		{Method: "POST", Path: agentproto.PathUnregister, Tag: "agent", Summary: "Agent: unregister; the credential is revoked (agent credential).", Public: true, Responses: map[int]string{204: ""}, Errors: []int{401}},
	}
}

func obj(props map[string]any, required ...string) map[string]any {
	o := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

var (
	str     = map[string]any{"type": "string"}
	integer = map[string]any{"type": "integer"}
	when    = map[string]any{"type": "string", "format": "date-time"}
	whenNil = map[string]any{"type": "string", "format": "date-time", "nullable": true}
	// password is a new password, within auth's bounds.
	password = map[string]any{"type": "string", "format": "password", "minLength": ecpauth.MinPasswordLen, "maxLength": ecpauth.MaxPasswordLen}
)

// name is a display name of at most maxRunes characters (package names).
func name(maxRunes int) map[string]any {
	return map[string]any{"type": "string", "minLength": 1, "maxLength": maxRunes}
}

// alertRules is the "rules" member of the alert settings: one property per
// rule of the catalogue, with the rule's threshold range.
func alertRules() map[string]any {
	props := map[string]any{}
	for _, e := range rules.Catalogue {
		p := map[string]any{
			"enabled":       map[string]any{"type": "boolean"},
			"severity":      map[string]any{"type": "string", "enum": alerting.Severities, "description": "Left out: the project's severity."},
			"triggerCount":  map[string]any{"type": "integer", "minimum": 1, "maximum": alerting.MaxCount, "description": "Left out: the project's triggerCount."},
			"recoveryCount": map[string]any{"type": "integer", "minimum": 1, "maximum": alerting.MaxCount, "description": "Left out: the project's recoveryCount."},
		}
		desc := fmt.Sprintf("Alerts %s.", strings.Join(e.Alerts, ", "))
		if t := e.Threshold; t != nil {
			p["threshold"] = map[string]any{"type": "number", "minimum": t.Min, "maximum": t.Max,
				"description": fmt.Sprintf("In %s; left out: %v.", t.Unit, t.Default)}
		}
		if e.DefaultOn {
			desc += " On in a new project's settings."
		}
		if e.ID == rules.CatalogueEMQXAlarm {
			desc += " On exactly when emqxAlertPush is: enabled is ignored on PUT."
		}
		o := obj(p, "enabled")
		o["description"] = desc
		o["additionalProperties"] = false
		props[e.ID] = o
	}
	o := obj(props)
	o["additionalProperties"] = false
	o["description"] = "The rule catalogue, by rule id. A rule left out has its default (off, but for ruleAbnormal and connectorAbnormal); " +
		"a body or record without this member at all keeps the meaning it had before the catalogue: clusterStatus, nodeDown, connections (90 %), " +
		"ruleAbnormal and connectorAbnormal on. Replies list every rule with its threshold."
	return o
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }

func list(item string) map[string]any {
	return obj(map[string]any{"items": map[string]any{"type": "array", "items": ref(item)}}, "items")
}

func schemas() map[string]any {
	return map[string]any{
		"Error": obj(map[string]any{"error": obj(map[string]any{"code": str, "message": str, "field": str,
			// A validation error names its first wrong field above and
			// lists every one here, so a form can mark them all at once.
			"errors": map[string]any{"type": "array", "items": obj(map[string]any{"field": str, "message": str}, "field", "message")},
		}, "code", "message")}, "error"),
		"LoginRequest":    obj(map[string]any{"username": str, "password": map[string]any{"type": "string", "format": "password"}}, "username", "password"),
		"LoginResponse":   obj(map[string]any{"token": str, "username": str, "expiresAt": when}, "token", "expiresAt"),
		"UserRequest":     obj(map[string]any{"username": str, "password": password}, "username", "password"),
		"PasswordRequest": obj(map[string]any{"currentPassword": map[string]any{"type": "string", "format": "password"}, "password": password}, "password"),
		"User":            obj(map[string]any{"username": str, "createdAt": when}),
		"UserList":        list("User"),
		"APITokenRequest": obj(map[string]any{"name": name(ecpauth.MaxTokenNameRunes), "expiresAt": when}, "name"),
		"APIToken":        obj(map[string]any{"id": str, "name": str, "username": str, "createdAt": when, "expiresAt": when}),
		"APITokenCreated": obj(map[string]any{"id": str, "name": str, "username": str, "createdAt": when, "expiresAt": when, "token": str}),
		"APITokenList":    list("APIToken"),
		"NameRequest":     obj(map[string]any{"name": name(tenancy.MaxNameRunes)}, "name"),
		"Org":             obj(map[string]any{"id": str, "name": str, "createdAt": when}),
		"OrgList":         list("Org"),
		"Project":         obj(map[string]any{"id": str, "name": str, "org": str, "createdAt": when}),
		"ProjectList":     list("Project"),
		"BindingRequest": obj(map[string]any{
			"username": str,
			"role":     map[string]any{"type": "string", "enum": roles},
			"org":      str, "project": str,
		}, "username", "role"),
		"Binding": obj(map[string]any{"id": str, "username": str, "role": map[string]any{"type": "string", "enum": roles}, "org": str, "project": str, "createdAt": when,
			"userGeneration": map[string]any{"type": "integer", "format": "int64", "description": "Generation of the user the role was granted to: the binding gives nothing to a later user of the same name. Absent on bindings granted before generations were recorded."}}),
		"BindingList": list("Binding"),
		"StateReason": obj(map[string]any{"code": map[string]any{"type": "string", "description": "Stable code of why the cluster is not running: " + strings.Join(stateReasons, ", ") + "; an agent may report codes added after this ecp."}, "message": str, "since": when}),
		"Cluster": obj(map[string]any{
			"id": str, "name": str, "project": str,
			"state":       map[string]any{"type": "string", "enum": clusterStates},
			"stateReason": map[string]any{"type": "object", "allOf": []any{ref("StateReason")}, "nullable": true},
			"serviceUrl":  str, "version": str, "nodes": integer, "nodesRunning": integer,
			"connections": integer, "liveConnections": integer, "maxConnections": integer,
			"startedAt": whenNil, "managedSince": whenNil, "lastReportAt": whenNil,
			"agentVersion": str, "createdAt": when, "updatedAt": when,
			"logCollection": map[string]any{"allOf": []any{ref("LogCollection")}, "description": "What the agent is told to do: the operator's switch (PATCH logCollection) when set, else the agent's registration choice; never enabled without the log directory the agent registered."},
		}),
		"LogCollection": obj(map[string]any{"enabled": map[string]any{"type": "boolean"}, "dir": map[string]any{"type": "string", "description": "EMQX's log directory on the agent's host, as the agent registered it; absent when none."}}, "enabled"),
		"ClusterList": obj(map[string]any{
			"items":         map[string]any{"type": "array", "items": ref("Cluster")},
			"nextPageToken": map[string]any{"type": "string", "description": "Continues after the last item; absent on the last page."},
			"prevPageToken": map[string]any{"type": "string", "description": "Leads to the page before the first item; absent on the first page."},
			"total":         map[string]any{"type": "integer", "description": "Entries matching q and state."},
			"stateCounts":   map[string]any{"type": "object", "description": "Entries of the list in each state, before the q and state filters.", "additionalProperties": integer},
		}, "items", "total", "stateCounts"),
		"ClusterCreate": obj(map[string]any{"name": name(clusters.MaxNameRunes), "serviceUrl": map[string]any{"type": "string", "format": "uri"}}, "name"),
		"ClusterPatch": obj(map[string]any{
			"name": name(clusters.MaxNameRunes), "serviceUrl": map[string]any{"type": "string", "format": "uri"},
			"logCollection": map[string]any{"allOf": []any{obj(map[string]any{"enabled": map[string]any{"type": "boolean"}}, "enabled")},
				"description": "Switches log shipping on or off, overriding the agent's registration choice from now on (also across re-registrations). Before any agent registered the switch is stored and applies once one registers with a log directory."},
		}),
		"TransferRequest":       obj(map[string]any{"project": str, "serviceUrl": str}, "project"),
		"MaxConnectionsRequest": obj(map[string]any{"maxConnections": map[string]any{"type": "integer", "minimum": 1}}, "maxConnections"),
		"Registration": obj(map[string]any{
			"clusterId": str, "token": str, "expiresAt": when, "ecpUrl": str, "maxConnections": integer, "note": str,
			"placeholders": map[string]any{"type": "array", "items": str}, "systemdUnit": str,
			"commands": map[string]any{"type": "array", "items": obj(map[string]any{
				"os": str, "arch": str, "download": str, "chmod": str, "run": str, "register": str, "script": str,
			})},
		}),
		"Licence":     obj(map[string]any{"totalConnections": integer, "maxPerCluster": integer, "allocated": integer, "remaining": integer}),
		"AuditRecord": obj(map[string]any{"id": str, "time": when, "actor": str, "via": str, "method": str, "route": str, "path": str, "status": integer, "org": str, "project": str, "target": str, "remote": str}),
		"AuditList":   list("AuditRecord"),
		"QuotaRequest": obj(map[string]any{"maxConnections": map[string]any{"type": "integer", "minimum": 0, "nullable": true,
			"description": "The most the clusters below may be given in total, up to the licence's total; null removes the quota."}}, "maxConnections"),
		"ScopeQuota": obj(map[string]any{
			"org": str, "project": str,
			"maxConnections": map[string]any{"type": "integer", "nullable": true, "description": "The quota; null when unset."},
			"allocated":      integer,
			"remaining":      map[string]any{"type": "integer", "description": "How many more connections the clusters here may be given: the least of what this quota and every level above leave."},
			"limitedBy":      map[string]any{"type": "string", "enum": quotaScopes, "description": "The quota that bounds remaining."},
			"overBy":         map[string]any{"type": "integer", "description": "How far the allocation is over the quota after it was lowered; 0 otherwise."},
		}),
		"MonitoringOverview": obj(map[string]any{
			"project":     str,
			"connections": obj(map[string]any{"total": integer, "online": integer}),
			"rules":       obj(map[string]any{"total": integer, "running": integer, "stopped": integer}),
			"connectors":  obj(map[string]any{"total": integer, "connected": integer, "disconnected": integer}),
			"actions":     obj(map[string]any{"total": integer, "connected": integer, "disconnected": integer}),
			"sources":     obj(map[string]any{"total": integer, "connected": integer, "disconnected": integer}),
			"clusters": map[string]any{"type": "array", "items": obj(map[string]any{"id": str, "name": str, "state": str,
				"reported": map[string]any{"type": "boolean"}, "reachable": map[string]any{"type": "boolean"}, "collectedAt": when})},
			"abnormal": map[string]any{"type": "array", "items": obj(map[string]any{"clusterId": str, "clusterName": str, "kind": str,
				"id": str, "name": str, "status": str, "reason": str, "dashboardUrl": str})},
		}),
		"AlertSettings": obj(map[string]any{
			"enabled":       map[string]any{"type": "boolean"},
			"triggerCount":  map[string]any{"type": "integer", "minimum": 1, "maximum": alerting.MaxCount},
			"recoveryCount": map[string]any{"type": "integer", "minimum": 1, "maximum": alerting.MaxCount},
			"severity":      map[string]any{"type": "string", "enum": alerting.Severities},
			"emqxAlertPush": map[string]any{"type": "boolean"},
			"criticalOnly":  map[string]any{"type": "boolean", "description": "Only alerts of severity critical reach the e-mail recipients and webhooks; the alert lists still show every alert, and test notifications and the storm notice go out whatever their severity."},
			"emails":        map[string]any{"type": "array", "maxItems": alerting.MaxEmails, "items": map[string]any{"type": "string", "format": "email"}},
			"webhooks": map[string]any{"type": "array", "maxItems": alerting.MaxWebhooks, "items": obj(map[string]any{
				"url": map[string]any{"type": "string", "format": "uri"},
				"headers": map[string]any{"type": "array", "maxItems": alerting.MaxHeaders,
					"description": "Custom headers ecp adds to each request (the webhook is then relayed by ecp). Names are HTTP tokens; " + strings.Join(alerting.RefusedHeaderNames(), ", ") + " are refused. Values are secrets: replies leave them out, and a header sent without a value keeps the value saved for the same webhook URL.",
					"items": obj(map[string]any{
						"name":  map[string]any{"type": "string", "maxLength": alerting.MaxHeaderName},
						"value": map[string]any{"type": "string", "maxLength": alerting.MaxHeaderValue, "writeOnly": true},
					}, "name")},
				"template": map[string]any{"type": "string", "maxLength": alerting.MaxTemplate,
					"description": "JSON body posted once per alert instead of Alertmanager's payload (the webhook is then relayed by ecp), with placeholders inside its strings: {{" + strings.Join(alerting.Placeholders, "}}, {{") + "}}. Checked when saved: it must render valid JSON with sample values, and every placeholder must be known."},
			}, "url")},
			"rules": alertRules(),
			"stormThreshold": map[string]any{"type": "integer", "minimum": alerting.MinStormThreshold, "maximum": alerting.MaxStormThreshold, "default": alerting.DefaultStormThreshold,
				"description": "New alerts within a minute that stop the project's notifications until a project admin clears the storm (DELETE /projects/{project}/alerts/storm)."},
		}, "enabled", "triggerCount", "recoveryCount", "severity"),
		"AlertSettingsReply": map[string]any{"allOf": []any{ref("AlertSettings"), obj(map[string]any{
			"updatedAt": whenNil,
			"status": obj(map[string]any{
				"delivery":  map[string]any{"type": "string", "enum": deliveries},
				"message":   str,
				"appliedAt": whenNil,
			}),
		})}},
		"AlertHistoryCleared": obj(map[string]any{"deleted": integer}, "deleted"),
		"AlarmToken":          obj(map[string]any{"createdAt": when, "createdBy": str}),
		"AlarmTokenCreated":   obj(map[string]any{"token": map[string]any{"type": "string", "format": "password", "readOnly": true}, "createdAt": when, "createdBy": str}, "token"),
		"CustomAlarm": obj(map[string]any{
			"name":     map[string]any{"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]*$", "maxLength": alerts.MaxAlarmName},
			"severity": map[string]any{"type": "string", "enum": alerting.Severities},
			"cluster":  map[string]any{"type": "string", "description": "Id of a cluster of the project."},
			"message":  map[string]any{"type": "string", "minLength": 1, "maxLength": alerts.MaxAlarmMessage},
			"labels": map[string]any{"type": "object", "maxProperties": alerts.MaxAlarmLabels,
				"additionalProperties": map[string]any{"type": "string", "minLength": 1, "maxLength": alerts.MaxAlarmLabelValue}},
			"startsAt": when, "endsAt": when, "resolved": map[string]any{"type": "boolean"},
		}, "name", "severity", "message"),
		"CustomAlarmReply": obj(map[string]any{
			"name": str, "state": map[string]any{"type": "string", "enum": []string{alerts.AlarmFiring, alerts.AlarmResolved}},
			"startsAt": whenNil, "endsAt": whenNil, "message": str,
		}),
		"NotificationPolicyRules": obj(map[string]any{
			"allowCidrs": map[string]any{"type": "array", "maxItems": destpolicy.MaxCIDRs, "items": str},
			"denyCidrs":  map[string]any{"type": "array", "maxItems": destpolicy.MaxCIDRs, "items": str},
		}),
		"NotificationPolicy": obj(map[string]any{
			"allowCidrs": map[string]any{"type": "array", "items": str},
			"denyCidrs":  map[string]any{"type": "array", "items": str},
			"updatedAt":  whenNil, "updatedBy": str,
			"dependencies": map[string]any{"type": "array", "readOnly": true, "items": obj(map[string]any{"name": str, "endpoint": str})},
		}),
		"AlertTestChannel": obj(map[string]any{
			"email":   map[string]any{"type": "string", "format": "email", "description": "One of the project's e-mail recipients."},
			"webhook": map[string]any{"type": "string", "format": "uri", "description": "The URL of one of the project's webhooks."},
		}),
		"AlertTestReply": obj(map[string]any{"alertname": str, "testId": str, "sentAt": when, "message": str}),
		"Alert": obj(map[string]any{
			"id": str, "name": str, "project": str, "cluster": str, "severity": str,
			"summary": str, "description": str, "link": str,
			"labels":   map[string]any{"type": "object", "additionalProperties": str},
			"startsAt": when, "endsAt": whenNil,
			"state":          map[string]any{"type": "string", "enum": alertStates},
			"endReason":      map[string]any{"type": "string", "enum": endReasons},
			"lastNotifiedAt": when, "fingerprint": str, "generatorUrl": str,
			"silencedBy": map[string]any{"type": "array", "items": str, "description": "Active list only: the ids of the silences muting the alert now, as Alertmanager says; absent when none."},
		}),
		"SilenceRequest": obj(map[string]any{
			"alert":    map[string]any{"type": "string", "description": "An alert id of the project's active list: its labels, exactly. Alone."},
			"cluster":  map[string]any{"type": "string", "description": "A cluster id of the project."},
			"rule":     map[string]any{"type": "string", "enum": rules.CatalogueIDs(), "description": "A catalogue rule: all its alerts."},
			"labels":   map[string]any{"type": "object", "maxProperties": alerts.MaxSilenceLabels, "additionalProperties": map[string]any{"type": "string", "minLength": 1, "maxLength": alerts.MaxLabelValue}, "description": "More labels to match exactly; project is refused."},
			"duration": map[string]any{"type": "string", "example": "2h", "description": "From now: a duration such as 30m, 2h or 3d, from " + model.Duration(alerts.MinSilenceDuration).String() + " to " + model.Duration(alerts.MaxSilenceDuration).String() + "."},
			"comment":  map[string]any{"type": "string", "minLength": 1, "maxLength": alerts.MaxSilenceComment},
		}, "duration", "comment"),
		"Silence": obj(map[string]any{
			"id": str, "project": str, "cluster": str,
			"matchers": map[string]any{"type": "array", "items": obj(map[string]any{"name": str, "value": str,
				"isRegex": map[string]any{"type": "boolean"}, "isEqual": map[string]any{"type": "boolean"}})},
			"startsAt": when, "endsAt": when, "createdBy": str, "comment": str,
			"state": map[string]any{"type": "string", "enum": silenceStates},
		}),
		"SilenceList": list("Silence"),
		"AlertStorm": obj(map[string]any{
			"state":     map[string]any{"type": "string", "enum": stormStates},
			"threshold": integer,
			"recent":    map[string]any{"type": "integer", "description": "The project's new alerts within the last minute."},
			"since":     whenNil, "count": integer, "noticeAt": whenNil,
		}),
		"AlertList": list("Alert"),
		"LogItem":   obj(map[string]any{"time": when, "level": str, "cluster": str, "project": str, "node": str, "message": str, "raw": str, "fields": map[string]any{"type": "object", "additionalProperties": str}, "id": str}),
		"LogPage":   obj(map[string]any{"items": map[string]any{"type": "array", "items": ref("LogItem")}, "nextPageToken": str}),
		"LogCount":  obj(map[string]any{"count": integer}),
		"LogReceiver": obj(map[string]any{
			"type": map[string]any{"type": "string", "enum": receivers},
			"url":  map[string]any{"type": "string", "format": "uri"}, "username": str,
			"password":    map[string]any{"type": "string", "format": "password", "writeOnly": true},
			"passwordSet": map[string]any{"type": "boolean", "readOnly": true},
			"indexPrefix": str, "insecureSkipVerify": map[string]any{"type": "boolean"},
		}, "type", "url"),
		"LogReceiverTestReply": obj(map[string]any{"status": str, "message": str}),
		"AlertingStatus": obj(map[string]any{
			"configured": map[string]any{"type": "boolean"}, "prometheusUrl": str, "rulesDir": str,
			"alertmanagerUrl": str, "alertmanagerConfigFile": str, "webhookUrl": str, "smtp": map[string]any{"type": "boolean"},
			"leader": str, "revision": integer, "appliedAt": whenNil, "ok": map[string]any{"type": "boolean"}, "error": str,
			"projectErrors": map[string]any{"type": "object", "additionalProperties": str}, "projects": integer,
			"dropped": map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "array", "items": str}},
		}),
	}
}

// Document builds the OpenAPI 3.0 document.
func Document() map[string]any {
	paths := map[string]any{}
	for _, op := range Operations() {
		item, _ := paths[op.Path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[op.Path] = item
		}
		o := map[string]any{"summary": op.Summary, "tags": []string{op.Tag}, "operationId": operationID(op)}
		var params []any
		for _, seg := range strings.Split(op.Path, "/") {
			if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
				params = append(params, map[string]any{"name": strings.Trim(seg, "{}"), "in": "path", "required": true, "schema": str})
			}
		}
		for _, q := range op.Query {
			params = append(params, map[string]any{"name": q.Name, "in": "query", "description": q.Description, "schema": q.Schema})
		}
		if params != nil {
			o["parameters"] = params
		}
		if op.Public {
			o["security"] = []any{}
		}
		if op.Request != "" {
			o["requestBody"] = map[string]any{"required": !op.RequestOptional, "content": map[string]any{"application/json": map[string]any{"schema": ref(op.Request)}}}
		}
		resps := map[string]any{}
		for code, schema := range op.Responses {
			r := map[string]any{"description": http.StatusText(code)}
			if schema != "" {
				r["content"] = map[string]any{"application/json": map[string]any{"schema": ref(schema)}}
			}
			resps[itoa(code)] = r
		}
		for _, code := range op.Errors {
			resps[itoa(code)] = errorResponse(http.StatusText(code))
		}
		limit := op.BodyLimit
		if limit == 0 {
			limit = httpapi.DefaultBodyLimit
		}
		resps[itoa(http.StatusRequestEntityTooLarge)] = errorResponse(fmt.Sprintf("%s: the request body is larger than %d bytes (%s), this route's limit.",
			http.StatusText(http.StatusRequestEntityTooLarge), limit, size(limit)))
		if op.Request != "" || op.Body {
			resps[itoa(http.StatusRequestTimeout)] = errorResponse(http.StatusText(http.StatusRequestTimeout) +
				": the request body did not arrive within the server's read timeout (--web.read-timeout).")
		}
		resps["default"] = errorResponse("Any other error, such as 500 Internal, in the same envelope.")
		o["responses"] = resps
		item[strings.ToLower(op.Method)] = o
	}
	sc := schemas()
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":       "ecp API",
			"version":     version.Version,
			"license":     map[string]any{"name": LicenseName, "url": LicenseURL},
			"description": "Control plane for fleets of EMQX v5 Enterprise clusters. Errors are {\"error\": {\"code\", \"message\", \"field\"}}; lists are {\"items\": [...]}.",
		},
		"servers": []any{map[string]any{"url": "/"}},
		"paths":   paths,
		"components": map[string]any{
			"schemas":         sc,
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}},
		},
		"security": []any{map[string]any{"bearer": []any{}}},
	}
}

func operationID(op Operation) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(op.Method))
	for _, seg := range strings.Split(op.Path, "/") {
		seg = strings.Trim(seg, "{}-")
		if seg == "" || seg == "api" || seg == "v1" {
			continue
		}
		for _, part := range strings.Split(seg, "-") {
			if part != "" {
				b.WriteString(strings.ToUpper(part[:1]) + part[1:])
			}
		}
	}
	return b.String()
}

func errorResponse(description string) map[string]any {
	return map[string]any{"description": description, "content": map[string]any{"application/json": map[string]any{"schema": ref("Error")}}}
}

// size writes a byte count as the limits are written: 4 KiB, 1 MiB.
func size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

func itoa(n int) string {
	const digits = "0123456789"
	return string([]byte{digits[n/100%10], digits[n/10%10], digits[n%10]})
}

// Register mounts GET /api/v1/openapi.json on r (the root router).
func Register(r *mux.Router, a *httpapi.Adapter) {
	doc := Document()
	r.Handle(Path, a.Handle(func(w http.ResponseWriter, _ *http.Request) error {
		return httpapi.JSON(w, http.StatusOK, doc)
	})).Methods(http.MethodGet)
}
