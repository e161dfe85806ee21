#!/usr/bin/env bash
# Lints ecp's OpenAPI document, as ecp serves it at /api/v1/openapi.json,
# with Redocly CLI's `recommended` rules, as a new user of the API would
# check it. Fails on any error or warning and prints each problem. Installs
# the linter first (scripts/install-redocly.sh; a no-op once installed) and
# works offline after that: telemetry and the update check are off.
#
# Usage: scripts/lint-openapi.sh
# Env:   GO (default go), TOOLS (as install-redocly.sh).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
go="${GO:-go}"
redocly="$(bash scripts/install-redocly.sh)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$go" run ./ecp/openapi/dump >"$tmp/openapi.json"

export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1
# JSON, because the exit code says only whether there were errors; the
# warnings of the recommended rules are to be fixed too. Redocly's banners
# (for example Node.js deprecation notices) go to stderr, kept quiet unless
# it fails.
status=0
"$redocly" lint --extends=recommended --format=json --max-problems=1000 "$tmp/openapi.json" >"$tmp/report.json" 2>"$tmp/stderr" || status=$?
node - "$tmp/report.json" <<'JS' || { cat "$tmp/stderr" >&2; exit 1; }
const report = JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"));
const { errors, warnings } = report.totals;
for (const p of report.problems) {
  console.log(`${p.severity} ${p.ruleId} at ${p.location.map((l) => l.pointer).join(", ")}: ${p.message}`);
}
console.log(`openapi lint (redocly ${report.version}, recommended): ${errors} errors, ${warnings} warnings`);
process.exit(errors + warnings > 0 ? 1 : 0);
JS
if [[ $status -ne 0 ]]; then
	cat "$tmp/stderr" >&2
	echo "redocly lint exited $status" >&2
	exit 1
fi
