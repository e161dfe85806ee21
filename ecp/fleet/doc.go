// Package fleet is ecp's side of the agent protocol (agentproto): it
// registers agents, receives their reports, keeps each managed cluster's
// lifecycle state and tells every agent its desired state.
package fleet
