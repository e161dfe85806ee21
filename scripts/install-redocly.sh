#!/usr/bin/env bash
# Installs Redocly CLI, the OpenAPI linter `make lint` runs on ecp's OpenAPI
# document (scripts/lint-openapi.sh), into the repository's tool directory,
# once, and prints the path of its command.
#
# The version and the package's checksum are pinned in
# scripts/redocly/package.json and package-lock.json (`npm ci` installs
# exactly them); the package bundles its dependencies, so it is one
# download. Version 2.77.0 still runs on Node.js 20; later ones need 22.
# Idempotent: an installed copy of that version is reused and npm is not
# called, so lint works offline once this has run.
#
# Usage: scripts/install-redocly.sh   (prints the command's path)
# Env:   TOOLS (default <repo>/.tools), NPM (default npm).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
tools="${TOOLS:-$repo/.tools}"
npm="${NPM:-npm}"
pkg="$repo/scripts/redocly"
version="$(sed -n 's/.*"@redocly\/cli": "\([^"]*\)".*/\1/p' "$pkg/package.json" | head -n 1)"
if [[ -z "$version" ]]; then
	echo "install-redocly: no @redocly/cli version in $pkg/package.json" >&2
	exit 1
fi
dir="$tools/redocly-$version"
link="$tools/redocly"

if [[ ! -x "$dir/node_modules/.bin/redocly" ]]; then
	command -v node >/dev/null && command -v "$npm" >/dev/null || {
		echo "install-redocly: Node.js and npm are needed (Debian: apt-get install nodejs npm)" >&2
		exit 1
	}
	mkdir -p "$tools"
	tmp="$(mktemp -d "$tools/.redocly.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	echo "installing @redocly/cli@$version into $tools" >&2
	chmod 755 "$tmp"
	cp "$pkg/package.json" "$pkg/package-lock.json" "$tmp/"
	(cd "$tmp" && "$npm" ci --ignore-scripts --no-audit --no-fund --no-update-notifier --loglevel=error >&2)
	# A concurrent install may have won the race; its copy is as good.
	mv -T "$tmp" "$dir" 2>/dev/null || true
fi
# A stable name for scripts; the versioned directory is the real one.
ln -sfn "redocly-$version/node_modules/.bin/redocly" "$link"
echo "$link"
