// Package docscheck holds the test that keeps CONFIGURATION.md in step with
// the binaries. It builds ecp, agent-exporter, emqx-sim and demo, asks every
// command and subcommand for its help, and fails naming each flag the
// command's section of CONFIGURATION.md does not document, each flag a
// section documents that the command no longer has, each environment
// variable the code reads but the page does not name, and each field of
// ecp's and the agent's configuration files the page leaves out.
//
// The flag check builds binaries, so it is skipped under -short; the
// others run always.
package docscheck
