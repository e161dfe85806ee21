#!/usr/bin/env bash
# Installs the VictoriaLogs server used by ecp's log-store integration tests
# into the repository's tool directory, once, and prints its path.
#
# VictoriaLogs stands in for Elasticsearch on machines where Elasticsearch
# cannot run: it accepts the Elasticsearch bulk API at
# /insert/elasticsearch/_bulk. The version is pinned so test results do not
# move under us. Idempotent: a binary already at the right version is reused.
#
# Usage: scripts/install-victorialogs.sh   (prints the binary's path)
# Env:   TOOLS (default <repo>/.tools), GO (default go).
set -euo pipefail

VERSION=v1.52.1
MODULE=github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs

repo="$(cd "$(dirname "$0")/.." && pwd)"
tools="${TOOLS:-$repo/.tools}"
go="${GO:-go}"
bin="$tools/victoria-logs-$VERSION"
link="$tools/victoria-logs"

if [[ ! -x "$bin" ]]; then
	mkdir -p "$tools"
	tmp="$(mktemp -d "$tools/.victoria-logs.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	echo "installing $MODULE@$VERSION into $tools" >&2
	# "go install module@version" builds the module with its own go.mod,
	# independent of this repository's.
	GOBIN="$tmp" "$go" install "$MODULE@$VERSION"
	mv "$tmp/victoria-logs" "$bin"
fi
# A stable name for tests and scripts; the versioned file is the real one.
ln -sfn "$(basename "$bin")" "$link"
echo "$link"
