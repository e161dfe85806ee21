// Command agent-exporter is the agent that runs next to an EMQX cluster:
// it exports the cluster's state as Prometheus metrics, reports it to ecp
// and enforces what ecp decides (max connections). See README.md.
package main

import (
	"os"

	"github.com/ecpio/ecp/agent-exporter/cli"
)

func main() { os.Exit(run()) }

func run() int { return cli.Main(os.Args[1:], cli.Env{}) }
