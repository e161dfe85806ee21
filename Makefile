# ecp: control plane for fleets of EMQX v5 Enterprise clusters.
# `make help` lists the targets.

GO          ?= go
BIN         := $(CURDIR)/bin
TOOLS       := $(CURDIR)/.tools
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION    ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS     := -s -w -X github.com/ecpio/ecp/internal/version.Version=$(VERSION) -X github.com/ecpio/ecp/internal/version.Revision=$(REVISION)
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION)
# The agent runs on operators' broker hosts: static binaries for each arch.
AGENT_PLATFORMS := linux/amd64 linux/arm64 linux/arm

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build ecp, agent-exporter and emqx-sim into ./bin.
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./ecp ./agent-exporter ./emqx-sim

.PHONY: test
test: test-deps lint ## Run every check: lint, unit, integration, end-to-end (all under the race detector, fuzz seeds included; allocation counts without it) and the deployment checks (what CI runs).
	$(GO) test -race -count=1 -timeout 20m ./...
	$(GO) test -count=1 -run '^TestStampGrowsItsBufferOnce$$' ./ecp/remotewrite/
	bash scripts/check-deploy.sh

.PHONY: test-deps
test-deps: ## Install what the integration tests run for real (Prometheus, Alertmanager, VictoriaLogs, Mailpit, Chromium).
	bash scripts/install-prometheus.sh
	bash scripts/install-victorialogs.sh
	bash scripts/install-mailpit.sh
	bash scripts/install-chromium.sh

.PHONY: test-short
test-short: ## Run the unit tests only.
	$(GO) test -count=1 -short ./...

.PHONY: bench
bench: ## Run the benchmarks and print their figures.
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run gofmt, go vet, golangci-lint, the OpenAPI linter (Redocly, installed by its script) and check go mod tidy.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...
	$(GOLANGCI_LINT) run ./...
	GO=$(GO) bash scripts/lint-openapi.sh
	$(GO) mod tidy -diff

$(GOLANGCI_LINT):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(TOOLS)/golangci-lint $@

.PHONY: clean
clean: ## Remove build output.
	rm -rf $(BIN)

.PHONY: dist
dist: ## Build static agent-exporter binaries for every supported arch into ./dist.
	@mkdir -p $(CURDIR)/dist
	@for p in $(AGENT_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		echo "agent-exporter $$os/$$arch"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
			-o $(CURDIR)/dist/agent-exporter-$$os-$$arch ./agent-exporter || exit 1; \
	done

.PHONY: demo
demo: build dist ## Run the product locally: ecp, two simulated EMQX clusters, registered agents, alerting and logs. Ctrl-C stops all.
	@bash scripts/install-prometheus.sh || echo "demo: Prometheus and Alertmanager could not be installed (apt-get needs root); the demo runs without alerting"
	@bash scripts/install-mailpit.sh || echo "demo: Mailpit could not be installed; the demo runs without alerting"
	@bash scripts/install-victorialogs.sh || echo "demo: VictoriaLogs could not be installed; the demo runs without log collection"
	@# Built, not `go run`: go run exits 1 after any Ctrl-C whatever its
	@# child returns, and make would report that as an error.
	CGO_ENABLED=0 $(GO) build -o $(BIN)/demo ./demo
	$(BIN)/demo --bin $(BIN) --dist $(CURDIR)/dist

.PHONY: demo-fault
demo-fault: ## Break a connector of the running demo's first cluster, to watch the alert arrive.
	$(GO) run ./demo --fault
