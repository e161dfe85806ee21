package grafana

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-openapi/runtime"
	goapi "github.com/grafana/grafana-openapi-client-go/client"
	"github.com/grafana/grafana-openapi-client-go/client/folders"
	"github.com/grafana/grafana-openapi-client-go/models"

	"github.com/ecpio/ecp/internal/secret"
)

// Client is the part of Grafana's HTTP API ecp uses: folders and
// dashboards, authenticated with a service-account token.
type Client struct {
	api *goapi.GrafanaHTTPAPI
}

// NewClient returns a client of the Grafana at base (http or https, with
// an optional sub-path such as /grafana). The token is sent as a bearer
// token; hc nil means http.DefaultClient.
func NewClient(base string, token secret.String, hc *http.Client) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("grafana URL %q: want an absolute http:// or https:// URL such as http://grafana:3000", base)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	cfg := &goapi.TransportConfig{
		Host:     u.Host,
		BasePath: strings.TrimRight(u.Path, "/") + "/api",
		Schemes:  []string{u.Scheme},
		APIKey:   token.Reveal(),
		Client:   hc,
		// Retries are the provisioner's: it logs and counts each failure.
		NumRetries: 0,
	}
	return &Client{api: goapi.NewHTTPClientWithConfig(nil, cfg)}, nil
}

func withContext(ctx context.Context) func(*runtime.ClientOperation) {
	return func(op *runtime.ClientOperation) { op.Context = ctx } //nolint:staticcheck // the generated client offers no other way to pass the context.
}

// isCode reports whether err is Grafana's answer with that status.
func isCode(err error, code int) bool {
	var c interface{ IsCode(int) bool }
	return errors.As(err, &c) && c.IsCode(code)
}

// Folder is a Grafana folder as ecp sees it.
type Folder struct {
	UID   string
	Title string
}

// EnsureFolder creates the folder, or renames it when its title differs.
func (c *Client) EnsureFolder(ctx context.Context, uid, title string) error {
	got, err := c.api.Folders.GetFolderByUID(uid, withContext(ctx))
	switch {
	case isCode(err, http.StatusNotFound):
		if _, err := c.api.Folders.CreateFolder(&models.CreateFolderCommand{UID: uid, Title: title}, withContext(ctx)); err != nil {
			return fmt.Errorf("create grafana folder %s: %w", uid, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("get grafana folder %s: %w", uid, err)
	}
	if got.Payload != nil && got.Payload.Title == title {
		return nil
	}
	if _, err := c.api.Folders.UpdateFolder(uid, &models.UpdateFolderCommand{Title: title, Overwrite: true}, withContext(ctx)); err != nil {
		return fmt.Errorf("rename grafana folder %s: %w", uid, err)
	}
	return nil
}

// DeleteFolder removes the folder and the dashboards in it; a folder that
// is already gone is not an error.
func (c *Client) DeleteFolder(ctx context.Context, uid string) error {
	p := folders.NewDeleteFolderParamsWithContext(ctx).WithFolderUID(uid)
	if _, err := c.api.Folders.DeleteFolder(p); err != nil && !isCode(err, http.StatusNotFound) {
		return fmt.Errorf("delete grafana folder %s: %w", uid, err)
	}
	return nil
}

// folderPage is how many folders one list call asks for.
const folderPage = 1000

// Folders lists the top-level folders.
func (c *Client) Folders(ctx context.Context) ([]Folder, error) {
	var out []Folder
	for page := int64(1); ; page++ {
		p := folders.NewGetFoldersParamsWithContext(ctx).WithLimit(ptr(int64(folderPage))).WithPage(ptr(page))
		resp, err := c.api.Folders.GetFolders(p)
		if err != nil {
			return nil, fmt.Errorf("list grafana folders: %w", err)
		}
		for _, f := range resp.Payload {
			out = append(out, Folder{UID: f.UID, Title: f.Title})
		}
		if len(resp.Payload) < folderPage {
			return out, nil
		}
	}
}

// PutDashboard creates or replaces the dashboard (by its uid) in the
// folder: POST /api/dashboards/db with overwrite, so the call is
// idempotent and ecp's copy wins over edits made in Grafana.
func (c *Client) PutDashboard(ctx context.Context, folderUID string, dashboard any) error {
	cmd := &models.SaveDashboardCommand{Dashboard: dashboard, FolderUID: folderUID, Overwrite: true,
		Message: "provisioned by ecp"}
	if _, err := c.api.Dashboards.PostDashboard(cmd, withContext(ctx)); err != nil {
		return fmt.Errorf("save grafana dashboard in folder %s: %w", folderUID, err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }
