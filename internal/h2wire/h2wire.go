// Package h2wire reads what an HTTP/2 peer announces in its first frames:
// its SETTINGS and the connection's flow-control window. ecp's server and
// the agent's transport each announce small limits (docs/scaling.md, "What
// an HTTP/2 agent costs"); their tests read them here as the other side
// sees them, rather than trusting the configuration that set them.
package h2wire

import (
	"fmt"

	"golang.org/x/net/http2"
)

// initialWindow is HTTP/2's connection window before any WINDOW_UPDATE.
const initialWindow = 65535

// Announced is what a peer announced.
type Announced struct {
	Settings map[http2.SettingID]uint32
	// ConnWindow is the connection's receive window once widened by the
	// peer's first WINDOW_UPDATE on stream 0.
	ConnWindow uint32
}

// Read reads frames from fr until the peer's first SETTINGS (not an ACK)
// and its first connection WINDOW_UPDATE have arrived. The caller bounds it
// with the connection's deadline.
func Read(fr *http2.Framer) (Announced, error) {
	a := Announced{Settings: map[http2.SettingID]uint32{}}
	for gotSettings := false; !gotSettings || a.ConnWindow == 0; {
		f, err := fr.ReadFrame()
		if err != nil {
			return a, fmt.Errorf("reading the peer's first frames (so far %+v): %w", a, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				gotSettings = true
				_ = f.ForeachSetting(func(s http2.Setting) error { a.Settings[s.ID] = s.Val; return nil })
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				a.ConnWindow = initialWindow + f.Increment
			}
		}
	}
	return a, nil
}
