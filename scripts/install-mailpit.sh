#!/usr/bin/env bash
# Installs Mailpit, the SMTP sink ecp's alerting end-to-end test delivers
# e-mail to (its HTTP API shows what arrived), into the repository's tool
# directory, once, and prints its path.
#
# The version is pinned so test results do not move under us. Idempotent: a
# binary already at the right version is reused and nothing is downloaded.
#
# Usage: scripts/install-mailpit.sh   (prints the binary's path)
# Env:   TOOLS (default <repo>/.tools), GO (default go).
set -euo pipefail

VERSION=v1.27.11
MODULE=github.com/axllent/mailpit

repo="$(cd "$(dirname "$0")/.." && pwd)"
tools="${TOOLS:-$repo/.tools}"
go="${GO:-go}"
bin="$tools/mailpit-$VERSION"
link="$tools/mailpit"

if [[ ! -x "$bin" ]]; then
	mkdir -p "$tools"
	tmp="$(mktemp -d "$tools/.mailpit.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	echo "installing $MODULE@$VERSION into $tools" >&2
	# "go install module@version" builds the module with its own go.mod,
	# independent of this repository's.
	GOBIN="$tmp" "$go" install "$MODULE@$VERSION"
	mv "$tmp/mailpit" "$bin"
fi
# A stable name for tests and scripts; the versioned file is the real one.
ln -sfn "$(basename "$bin")" "$link"
echo "$link"
