// Package docscheck holds the test that keeps CONFIGURATION.md in step with
// the binaries. It builds ecp, agent-exporter, emqx-sim and demo, asks every
// command and subcommand for its help, and fails naming each flag that has
// no row of its own in its command's section of CONFIGURATION.md, each row
// whose default is not the one the help shows, each flag a section
// documents that the command no longer has, each environment
// variable the code reads but the page does not name, and each field of
// ecp's and the agent's configuration files the page leaves out.
//
// A row writes a fixed default as one backquoted value, optionally with a
// note in parentheses (`2160h` (90 days)); durations compare by value.
// A flag whose help shows no default (a Go flag's zero value, a kingpin
// flag without one) may be documented as none, required, or a computed
// default such as `<data.dir>/secrets.key`. kingpin never shows the
// default of a boolean, so those rows go unchecked.
//
// The flag check builds binaries, so it is skipped under -short; the
// others run always.
package docscheck
