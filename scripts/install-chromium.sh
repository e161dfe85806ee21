#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver, which the web console's
# browser tests drive headless. Idempotent: nothing is downloaded when both
# are present.
#
# Usage: scripts/install-chromium.sh   (as root, or with sudo available)
set -euo pipefail

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
	exit 0
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then
	sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver
chromium --version
