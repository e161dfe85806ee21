#!/usr/bin/env bash
# Installs Debian's Prometheus 2.42 (prometheus, promtool) and Alertmanager
# 0.25 (prometheus-alertmanager, amtool) when any of them is missing. The
# alerting tests and CI run these real binaries; see
# shared/research/prom-stack.md for why Debian's packages are the ones used.
#
# Idempotent and non-interactive: with every binary present it changes
# nothing. Needs root (or sudo) for apt-get. Nothing is started: tests start
# the daemons themselves.
set -euo pipefail

need=()
for bin in prometheus promtool prometheus-alertmanager amtool; do
	command -v "$bin" >/dev/null 2>&1 || need+=("$bin")
done
if [ "${#need[@]}" -eq 0 ]; then
	echo "install-prometheus: prometheus, promtool, prometheus-alertmanager and amtool already installed"
	exit 0
fi
echo "install-prometheus: missing ${need[*]}; installing with apt-get"

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || { echo "install-prometheus: run as root (apt-get needs it)" >&2; exit 1; }
	sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
# --no-install-recommends keeps node-exporter and the old UI's JS out; the
# binaries we need are in these two packages.
"${sudo[@]}" apt-get install -y -q --no-install-recommends prometheus prometheus-alertmanager

for bin in prometheus promtool prometheus-alertmanager amtool; do
	command -v "$bin" >/dev/null 2>&1 || { echo "install-prometheus: $bin still missing after install" >&2; exit 1; }
done
prometheus --version 2>&1 | head -1
prometheus-alertmanager --version 2>&1 | head -1
