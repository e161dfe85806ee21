// Command dump prints ecp's OpenAPI document, as ecp serves it at
// /api/v1/openapi.json, to standard output, so that tools such as the
// OpenAPI linter of `make lint` can read it without starting ecp.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/ecpio/ecp/ecp/openapi"
)

func main() {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(openapi.Document()); err != nil {
		fmt.Fprintf(os.Stderr, "dump: writing the OpenAPI document: %v\n", err)
		os.Exit(1)
	}
}
