//go:build !linux

package cli

import (
	"io"
	"os"
)

func readPassword(*os.File, io.Writer, string) (string, error) { return "", errNotTerminal }
