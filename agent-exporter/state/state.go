// Package state owns the agent's state directory: the registration (ecp
// credential and EMQX login), the note left when a registration ended, and
// the control file through which the CLI finds the running daemon. The
// directory is mode 0700 and every file 0600, because they hold secrets.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/secret"
)

// DefaultDir is where the agent keeps its state.
const DefaultDir = "/var/lib/agent-exporter"

// File names inside the state directory.
const (
	RegistrationFile = "registration.json"
	EndedFile        = "registration-ended.json"
	ControlFile      = "control.json"
	ViewerFile       = "dashboard-viewer.json"
)

// ErrNotRegistered means the directory holds no registration.
var ErrNotRegistered = errors.New("not registered")

// Registration is everything the agent needs to resume after a restart.
type Registration struct {
	ECPURL     string
	ClusterID  string
	Project    string
	Credential secret.String
	// ReportInterval is what ecp last asked for.
	ReportInterval time.Duration
	RegisteredAt   time.Time

	EMQX EMQX
	// InsecureSkipVerify covers both ecp and EMQX.
	InsecureSkipVerify bool
	LogCollection      agentproto.LogCollection
}

// EMQX is how the agent logs in to EMQX.
type EMQX struct {
	APIURL       string
	DashboardURL string
	Username     string
	Password     secret.String
}

// disk is the on-disk form: secret.String marshals as "<secret>", so the
// file carries plain strings and only this package reveals them.
type disk struct {
	ECPURL             string                   `json:"ecpUrl"`
	ClusterID          string                   `json:"clusterId"`
	Project            string                   `json:"project"`
	Credential         string                   `json:"credential"`
	ReportInterval     string                   `json:"reportInterval"`
	RegisteredAt       time.Time                `json:"registeredAt"`
	APIURL             string                   `json:"emqxApiUrl"`
	DashboardURL       string                   `json:"emqxDashboardUrl"`
	Username           string                   `json:"emqxUsername"`
	Password           string                   `json:"emqxPassword"`
	InsecureSkipVerify bool                     `json:"insecureSkipVerify"`
	LogCollection      agentproto.LogCollection `json:"logCollection"`
}

// Ended records why and when the last registration ended.
type Ended struct {
	At        time.Time `json:"at"`
	Reason    string    `json:"reason"`
	ClusterID string    `json:"clusterId"`
}

// Control is how the CLI reaches the daemon: its URL and a token only
// readers of the state directory know, so other local users cannot drive
// the control API on the loopback listener.
type Control struct {
	URL   string        `json:"url"`
	Token secret.String `json:"-"`
	// WebConfigFile is the daemon's --web.config.file (absolute), when
	// it serves https: the CLI trusts exactly the certificate it names.
	WebConfigFile string `json:"webConfigFile,omitempty"`
}

type controlDisk struct {
	URL           string `json:"url"`
	Token         string `json:"token"`
	WebConfigFile string `json:"webConfigFile,omitempty"`
}

// Dir is a state directory.
type Dir struct{ path string }

// Open creates the directory (0700) if needed and tightens its mode.
func Open(path string) (*Dir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("creating state dir: %w", err)
	}
	if err := os.Chmod(path, 0o700); err != nil {
		return nil, fmt.Errorf("securing state dir: %w", err)
	}
	return &Dir{path: path}, nil
}

// At returns the directory at path without creating it (CLI side).
func At(path string) *Dir { return &Dir{path: path} }

// Path is the directory's path.
func (d *Dir) Path() string { return d.path }

// LoadRegistration reads the registration or returns ErrNotRegistered.
func (d *Dir) LoadRegistration() (Registration, error) {
	var v disk
	if err := d.read(RegistrationFile, &v); err != nil {
		return Registration{}, err
	}
	iv, _ := time.ParseDuration(v.ReportInterval)
	return Registration{
		ECPURL: v.ECPURL, ClusterID: v.ClusterID, Project: v.Project, Credential: secret.String(v.Credential),
		ReportInterval: iv, RegisteredAt: v.RegisteredAt,
		EMQX:               EMQX{APIURL: v.APIURL, DashboardURL: v.DashboardURL, Username: v.Username, Password: secret.String(v.Password)},
		InsecureSkipVerify: v.InsecureSkipVerify, LogCollection: v.LogCollection,
	}, nil
}

// SaveRegistration writes r atomically with mode 0600.
func (d *Dir) SaveRegistration(r Registration) error {
	return d.write(RegistrationFile, disk{
		ECPURL: r.ECPURL, ClusterID: r.ClusterID, Project: r.Project, Credential: r.Credential.Reveal(),
		ReportInterval: r.ReportInterval.String(), RegisteredAt: r.RegisteredAt,
		APIURL: r.EMQX.APIURL, DashboardURL: r.EMQX.DashboardURL, Username: r.EMQX.Username, Password: r.EMQX.Password.Reveal(),
		InsecureSkipVerify: r.InsecureSkipVerify, LogCollection: r.LogCollection,
	})
}

// EndRegistration forgets the registration and records why.
func (d *Dir) EndRegistration(e Ended) error {
	if err := d.write(EndedFile, e); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(d.path, RegistrationFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing registration: %w", err)
	}
	return nil
}

// LoadEnded returns the note of the last ended registration, if any.
func (d *Dir) LoadEnded() (Ended, bool) {
	var e Ended
	if err := d.read(EndedFile, &e); err != nil {
		return Ended{}, false
	}
	return e, true
}

// ClearEnded removes the note (a new registration started).
func (d *Dir) ClearEnded() {
	_ = os.Remove(filepath.Join(d.path, EndedFile))
}

// DashboardViewer is the EMQX dashboard user of role viewer the agent
// keeps for read-only dashboard jumps, with the password it chose. APIURL
// names the EMQX it was made on, so a registration against another
// cluster does not try it there.
type DashboardViewer struct {
	APIURL   string
	Username string
	Password secret.String
}

type viewerDisk struct {
	APIURL   string `json:"emqxApiUrl"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// LoadDashboardViewer reads the viewer user; ok is false when there is
// none yet.
func (d *Dir) LoadDashboardViewer() (v DashboardViewer, ok bool, err error) {
	var dv viewerDisk
	if err := d.read(ViewerFile, &dv); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return DashboardViewer{}, false, nil
		}
		return DashboardViewer{}, false, err
	}
	return DashboardViewer{APIURL: dv.APIURL, Username: dv.Username, Password: secret.String(dv.Password)}, true, nil
}

// SaveDashboardViewer writes the viewer user atomically with mode 0600.
func (d *Dir) SaveDashboardViewer(v DashboardViewer) error {
	return d.write(ViewerFile, viewerDisk{APIURL: v.APIURL, Username: v.Username, Password: v.Password.Reveal()})
}

// SaveControl publishes the daemon's control address and token.
func (d *Dir) SaveControl(c Control) error {
	return d.write(ControlFile, controlDisk{URL: c.URL, Token: c.Token.Reveal(), WebConfigFile: c.WebConfigFile})
}

// LoadControl reads the daemon's control address and token.
func (d *Dir) LoadControl() (Control, error) {
	var c controlDisk
	if err := d.read(ControlFile, &c); err != nil {
		return Control{}, err
	}
	return Control{URL: c.URL, Token: secret.String(c.Token), WebConfigFile: c.WebConfigFile}, nil
}

// RemoveControl withdraws the control file when the daemon stops.
func (d *Dir) RemoveControl() {
	_ = os.Remove(filepath.Join(d.path, ControlFile))
}

func (d *Dir) read(name string, v any) error {
	b, err := os.ReadFile(filepath.Join(d.path, name))
	if errors.Is(err, fs.ErrNotExist) && name == RegistrationFile {
		return ErrNotRegistered
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decoding %s: %w", name, err)
	}
	return nil
}

// write replaces name atomically: a crash leaves the old or the new file,
// never half of one.
func (d *Dir) write(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", name, err)
	}
	f, err := os.CreateTemp(d.path, "."+name+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("securing %s: %w", name, err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(d.path, name)); err != nil {
		return fmt.Errorf("replacing %s: %w", name, err)
	}
	return nil
}
