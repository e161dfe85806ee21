// Package version carries the build version of every binary, set at link
// time with -ldflags "-X github.com/ecpio/ecp/internal/version.Version=…".
package version

// Version is the release this binary was built from.
var Version = "0.1.0-dev"

// Revision is the VCS commit, when the build recorded it.
var Revision = ""
