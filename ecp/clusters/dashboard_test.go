package clusters

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/fleet"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/internal/secret"
)

type jumpFleet struct {
	Fleet
	login fleet.DashboardLogin
	err   error
}

func (f jumpFleet) DashboardSession(context.Context, string, string, time.Duration) (fleet.DashboardLogin, error) {
	return f.login, f.err
}

func TestDashboardJump(t *testing.T) {
	const token = "eyJ.jwt+/=token"
	login := fleet.DashboardLogin{Username: "admin", Token: secret.String(token), Role: "administrator", Version: "5.8.9", Edition: "ee"}
	tests := []struct {
		name      string
		fleet     Fleet
		wantLogin bool
		reason    string
	}{
		{"agent answers", jumpFleet{login: login}, true, ""},
		{"agent silent", jumpFleet{err: fleet.ErrDashboardTimeout}, false, "did not answer"},
		{"no agent", jumpFleet{err: fleet.ErrDashboardNoAgent}, false, "no agent"},
		{"EMQX refused", jumpFleet{err: errors.New("the agent could not log in to EMQX: EMQXAuthFailed")}, false, "EMQXAuthFailed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &API{fleet: tt.fleet, logger: slog.New(slog.DiscardHandler)}
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodGet, "/api/v1/clusters/c1/dashboard", nil)
			if err := api.jump(w, r, registry.Spec{ID: "c1", Project: "p1"}, "http://emqx.example:18083/", agentproto.DashboardRoleAdministrator); err != nil {
				t.Fatal(err)
			}
			loc := w.Header().Get("Location")
			if w.Code != http.StatusFound || w.Header().Get("Cache-Control") != "no-store" {
				t.Fatalf("reply %d, Cache-Control %q", w.Code, w.Header().Get("Cache-Control"))
			}
			if !tt.wantLogin {
				if loc != "http://emqx.example:18083/" || w.Header().Get(HeaderDashboardLogin) != "none" ||
					!strings.Contains(w.Header().Get(HeaderDashboardReason), tt.reason) {
					t.Fatalf("fallback: Location %q, headers %v", loc, w.Header())
				}
				return
			}
			u, err := url.Parse(loc)
			if err != nil {
				t.Fatal(err)
			}
			if u.RawQuery != "" || !strings.HasPrefix(u.Fragment, "/dashboard/overview?login_meta=") {
				t.Fatalf("Location %q: login_meta must be in the hash, not the query", loc)
			}
			q, err := url.ParseQuery(strings.TrimPrefix(u.Fragment, "/dashboard/overview?"))
			if err != nil {
				t.Fatal(err)
			}
			b, err := base64.StdEncoding.DecodeString(q.Get("login_meta"))
			if err != nil {
				t.Fatal(err)
			}
			var meta map[string]any
			if err := json.Unmarshal(b, &meta); err != nil {
				t.Fatal(err)
			}
			if meta["token"] != token || meta["username"] != "admin" || meta["version"] != "5.8.9" ||
				meta["role"] != "administrator" || meta["license"].(map[string]any)["edition"] != "ee" {
				t.Fatalf("login_meta = %s", b)
			}
		})
	}
}
