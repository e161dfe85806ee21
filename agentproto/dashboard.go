package agentproto

import (
	"crypto/ecdh"
	"crypto/hpke"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// The dashboard jump: ecp asks the agent for a fresh EMQX dashboard login
// (POST /api/v5/login with the credentials given at registration) and
// turns it into the dashboard's login_meta URL. The EMQX password stays
// with the agent; the token travels from the agent to the one ecp replica
// that waits for it, sealed to a key pair that replica made for this one
// request (HPKE, RFC 9180: DHKEM(X25519), HKDF-SHA256, AES-128-GCM). Any
// replica may take the agent's reply and pass it on through etcd; what it
// passes on, and what etcd holds for the request's ~30 s, is ciphertext.
//
// A request names the EMQX dashboard role the session may have, so that
// the jump never gives more than the ecp user's own role: administrator
// for whoever may change the cluster in ecp, viewer for a project viewer.
// The agent makes a viewer session with an EMQX dashboard user of role
// viewer that it keeps for this purpose, never with the registered user.
// ecp checks the role of the login it receives, so an agent that predates
// the field (and answers every request with the registered user) cannot
// hand a viewer an administrator session.

// Dashboard roles, as EMQX names the roles of its dashboard users.
const (
	DashboardRoleAdministrator = "administrator"
	DashboardRoleViewer        = "viewer"
)

// ProblemDashboardViewerUnavailable answers a viewer request the agent
// cannot serve with a viewer session (EMQX without dashboard roles, or the
// registered user may not manage dashboard users).
const ProblemDashboardViewerUnavailable = "DashboardViewerUnavailable"

// MaxDashboardURL bounds a dashboard or service URL.
const MaxDashboardURL = 2048

// CheckDashboardURL says what is wrong with a dashboard URL given by an
// operator or an agent, or returns nil: it must be an absolute http or
// https URL with a host, no credentials, query or fragment (the jump
// appends the dashboard's own "#/..." route), at most MaxDashboardURL
// bytes. Anything else (javascript:, data:, relative URLs) would become
// a link in the console or the target of the jump's redirect.
func CheckDashboardURL(s string) error {
	if len(s) > MaxDashboardURL {
		return fmt.Errorf("must be at most %d bytes", MaxDashboardURL)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return errors.New("must be an absolute http:// or https:// URL with a host, e.g. http://emqx.example:18083")
	}
	if u.User != nil || strings.ContainsAny(s, "?#") {
		return errors.New("must carry no credentials, query or fragment, e.g. http://emqx.example:18083")
	}
	return nil
}

// DashboardSessionRequest is one pending dashboard jump in DesiredState.
type DashboardSessionRequest struct {
	// ID names the request; the agent answers it once.
	ID string `json:"id"`
	// PublicKey is the HPKE public key (X25519, base64 std) the agent
	// seals its DashboardLogin to.
	PublicKey string `json:"publicKey"`
	// Role is the EMQX dashboard role the session may have
	// (DashboardRoleAdministrator or DashboardRoleViewer). ecp refuses a
	// login whose role differs from a viewer request's.
	Role string `json:"role"`
}

// DashboardSessionReply is the body of PathDashboardSession.
type DashboardSessionReply struct {
	RequestID string `json:"requestId"`
	// Sealed is SealDashboardLogin's output; empty when Problem is set.
	Sealed string `json:"sealed,omitempty"`
	// Problem says why the agent could not log in (EMQXUnreachable,
	// EMQXAuthFailed), so the user is told at once instead of waiting.
	Problem *Problem `json:"problem,omitempty"`
}

// DashboardLogin is what EMQX's POST /api/v5/login answered, the fields
// the dashboard's login_meta carries. It only ever travels sealed.
type DashboardLogin struct {
	Username string `json:"username"`
	Token    string `json:"token"`
	Role     string `json:"role,omitempty"`
	Version  string `json:"version,omitempty"`
	Edition  string `json:"edition,omitempty"`
}

// dashboardInfo binds the ciphertext to its purpose.
var dashboardInfo = []byte("ecp dashboard session v1")

func dashboardSuite() (hpke.KEM, hpke.KDF, hpke.AEAD) {
	return hpke.DHKEM(ecdh.X25519()), hpke.HKDFSHA256(), hpke.AES128GCM()
}

// DashboardKey is the private half of a request's key pair; it never
// leaves the memory of the ecp replica that made it.
type DashboardKey struct{ priv hpke.PrivateKey }

// NewDashboardKey makes a key pair for one request and returns it with the
// public key to put in DashboardSessionRequest.PublicKey.
func NewDashboardKey() (*DashboardKey, string, error) {
	kem, _, _ := dashboardSuite()
	priv, err := kem.GenerateKey()
	if err != nil {
		return nil, "", fmt.Errorf("generate dashboard key: %w", err)
	}
	return &DashboardKey{priv: priv}, base64.StdEncoding.EncodeToString(priv.PublicKey().Bytes()), nil
}

// SealDashboardLogin encrypts l to publicKey (base64, from the request).
func SealDashboardLogin(publicKey string, l DashboardLogin) (string, error) {
	kem, kdf, aead := dashboardSuite()
	raw, err := base64.StdEncoding.DecodeString(publicKey)
	if err != nil {
		return "", fmt.Errorf("decode dashboard public key: %w", err)
	}
	pk, err := kem.NewPublicKey(raw)
	if err != nil {
		return "", fmt.Errorf("parse dashboard public key: %w", err)
	}
	plain, err := json.Marshal(l)
	if err != nil {
		return "", fmt.Errorf("encode dashboard login: %w", err)
	}
	sealed, err := hpke.Seal(pk, kdf, aead, dashboardInfo, plain)
	clear(plain)
	if err != nil {
		return "", fmt.Errorf("seal dashboard login: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sealed), nil
}

// Open decrypts what SealDashboardLogin sealed to k's public key.
func (k *DashboardKey) Open(sealed string) (DashboardLogin, error) {
	_, kdf, aead := dashboardSuite()
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return DashboardLogin{}, fmt.Errorf("decode sealed dashboard login: %w", err)
	}
	plain, err := hpke.Open(k.priv, kdf, aead, dashboardInfo, raw)
	if err != nil {
		return DashboardLogin{}, fmt.Errorf("open sealed dashboard login: %w", err)
	}
	var l DashboardLogin
	err = json.Unmarshal(plain, &l)
	clear(plain)
	if err != nil {
		return DashboardLogin{}, fmt.Errorf("decode dashboard login: %w", err)
	}
	if l.Token == "" || l.Username == "" {
		return DashboardLogin{}, errors.New("dashboard login without username or token")
	}
	return l, nil
}
