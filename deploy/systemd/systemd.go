// Package systemd holds the agent's systemd unit, so that ecp can serve the
// very file this folder ships beside the agent binaries and the
// registration guide can link to it.
package systemd

import _ "embed" // for the unit below

// AgentUnit is agent-exporter.service.
//
//go:embed agent-exporter.service
var AgentUnit []byte
