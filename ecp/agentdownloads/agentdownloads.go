// Package agentdownloads serves the agent-exporter binaries that the
// registration guide tells operators to download, from a folder filled by
// `make dist` (files named agent-exporter-<os>-<arch>), and the agent's
// systemd unit (deploy/systemd, built into ecp) at UnitPath.
//
// The route is public: the download runs on a broker host with nothing but
// curl, and the binary is no secret (its registration token is).
package agentdownloads

import (
	"bytes"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/deploy/systemd"
	"github.com/ecpio/ecp/ecp/httpapi"
)

// DefaultDir is where `make dist` writes the binaries.
const DefaultDir = "./dist"

// Platforms are the builds ecp serves.
var Platforms = []string{"linux/amd64", "linux/arm64", "linux/arm"}

// Handler serves GET /downloads/agent-exporter/{os}/{arch}.
type Handler struct {
	dir string
}

// New serves the binaries found in dir.
func New(dir string) *Handler { return &Handler{dir: dir} }

// FileName is the file that holds the build for os/arch.
func FileName(goos, arch string) string { return "agent-exporter-" + goos + "-" + arch }

// UnitPath is where ecp serves the agent's systemd unit.
const UnitPath = "/downloads/agent-exporter.service"

// Register mounts the routes on r (the root router).
func (h *Handler) Register(r *mux.Router, a *httpapi.Adapter) {
	r.Handle("/downloads/agent-exporter/{os}/{arch}", a.Handle(h.serve)).Methods(http.MethodGet, http.MethodHead)
	r.Handle(UnitPath, a.Handle(serveUnit)).Methods(http.MethodGet, http.MethodHead)
}

// serveUnit serves deploy/systemd/agent-exporter.service as text, so a
// browser shows it and curl saves it.
func serveUnit(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	http.ServeContent(w, r, "agent-exporter.service", time.Time{}, bytes.NewReader(systemd.AgentUnit))
	return nil
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) error {
	goos, arch := mux.Vars(r)["os"], mux.Vars(r)["arch"]
	if !slices.Contains(Platforms, goos+"/"+arch) {
		return httpapi.NotFound("no agent-exporter build for %s/%s; ecp serves linux/amd64, linux/arm64 and linux/arm", goos, arch)
	}
	name := FileName(goos, arch)
	path := filepath.Join(h.dir, name)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return httpapi.NotFound("agent-exporter for %s/%s is not built on this ecp: run `make dist` (it writes dist/%s) or point --downloads.dir at the folder holding %s", goos, arch, name, name)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="agent-exporter"`)
	http.ServeContent(w, r, "agent-exporter", st.ModTime(), f)
	return nil
}
