#!/usr/bin/env bash
# Validates the deployment files without Docker or Kubernetes:
#   - docker-compose.yml with Debian's docker-compose (`config -q`; installed
#     with apt-get when missing, as root);
#   - the Helm chart deploy/helm/ecp with `helm lint --strict` and
#     `helm template`, for the default values and each deploy/helm/ecp/ci/*.yaml,
#     and that it refuses the values ecp cannot serve;
#   - deploy/prometheus/prometheus.yml with Debian's promtool (installed by
#     scripts/install-prometheus.sh when missing);
#   - the agent's systemd unit with systemd-analyze verify, where installed.
# Helm is helm.sh/helm/v3/cmd/helm@HELM_VERSION built with the Go toolchain
# into .tools/ once (a few minutes the first time, instant afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=v3.22.0
HELM=".tools/helm-$HELM_VERSION"
CHART=deploy/helm/ecp

fail() {
	echo "check-deploy: FAIL: $*" >&2
	exit 1
}

# --- docker-compose -------------------------------------------------------
if ! command -v docker-compose >/dev/null 2>&1; then
	[ "$(id -u)" -eq 0 ] || fail "docker-compose is not installed; run: sudo apt-get install -y docker-compose"
	echo "check-deploy: installing Debian's docker-compose"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null || fail "apt-get update failed"
	apt-get install -y -qq docker-compose >/dev/null || fail "apt-get install -y docker-compose failed"
fi
echo "check-deploy: $(docker-compose version --short 2>/dev/null || echo docker-compose) config -q docker-compose.yml"
if ! out=$(docker-compose -f docker-compose.yml config -q 2>&1); then
	fail "docker-compose.yml is not valid for docker-compose: $out"
fi

# --- Prometheus configuration of the compose stack ------------------------
bash scripts/install-prometheus.sh >/dev/null || fail "cannot install promtool (bash scripts/install-prometheus.sh)"
echo "check-deploy: promtool check config deploy/prometheus/prometheus.yml"
if ! out=$(promtool check config deploy/prometheus/prometheus.yml 2>&1); then
	fail "deploy/prometheus/prometheus.yml: $out"
fi

# --- systemd unit ----------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
	echo "check-deploy: systemd-analyze verify deploy/systemd/agent-exporter.service"
	unit=$(mktemp -d)
	# verify wants ExecStart's binary to exist: point it at a stand-in.
	: >"$unit/agent-exporter" && chmod +x "$unit/agent-exporter"
	sed "s#/usr/local/bin/agent-exporter#$unit/agent-exporter#" deploy/systemd/agent-exporter.service >"$unit/agent-exporter.service"
	# verify exits 0 on directives it ignores; any line about the unit fails.
	out=$(systemd-analyze verify "$unit/agent-exporter.service" 2>&1) || true
	if grep -q "agent-exporter.service" <<<"$out"; then
		rm -rf "$unit"
		fail "deploy/systemd/agent-exporter.service: ${out//$unit\//}"
	fi
	rm -rf "$unit"
else
	echo "check-deploy: systemd-analyze not installed; the systemd unit is not verified"
fi

# --- Helm -----------------------------------------------------------------
if [ ! -x "$HELM" ]; then
	echo "check-deploy: building helm $HELM_VERSION into .tools (first run only)"
	mkdir -p .tools
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	GOBIN="$tmp" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" || fail "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed"
	mv "$tmp/helm" "$HELM"
fi

values_sets=("")
for f in "$CHART"/ci/*.yaml; do
	values_sets+=("$f")
done
for v in "${values_sets[@]}"; do
	args=()
	name="default values"
	if [ -n "$v" ]; then
		args=(-f "$v")
		name="$v"
	fi
	echo "check-deploy: helm lint + template $CHART ($name)"
	if ! out=$("$HELM" lint --strict "$CHART" "${args[@]}" 2>&1); then
		fail "helm lint $CHART ($name):
$out"
	fi
	if ! out=$("$HELM" template ecp "$CHART" "${args[@]}" 2>&1 >/dev/null); then
		fail "helm template $CHART ($name):
$out"
	fi
done

# Values ecp cannot run with must stop the install with a message.
for bad in "etcd.endpoints=null" "etcd.tls.enabled=true" "alerting.mode=operator" "alerting.mode=bogus"; do
	if "$HELM" template ecp "$CHART" --set "$bad" >/dev/null 2>&1; then
		fail "helm template $CHART --set $bad succeeded; the chart must refuse it"
	fi
done

echo "check-deploy: ok"
