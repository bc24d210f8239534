# `make test` is what CI runs (.ci/run) and what README tells newcomers:
# it installs what the suite needs, then runs every check there is.
GO ?= go
export CI ?= true

.PHONY: all build test deps fmt-check vet race rules dashboards check-build fuzz e2e generate

all: build

build:
	./scripts/build.sh

# Debian's prometheus/alertmanager/chromium and npm's bun + broker, cached.
deps:
	./scripts/install-deps.sh all >/dev/null

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/

# Unit tests, race detector on; includes promtool rule tests (alerts/),
# dashboard checks (dashboards/) and the headless-Chromium page test (internal/health/).
race:
	$(GO) test -race -count=1 ./...

# alerts/authbroker-*.yml, dashboards/*.json and the Helm chart's copies of both, rendered from the
# monitoring mixin (mixin/, jsonnet through go-jsonnet); tests fail when the checked-in files differ.
generate:
	$(GO) run ./mixin/render

rules:
	./scripts/test-rules.sh

dashboards:
	$(GO) test -count=1 ./dashboards/

check-build:
	./scripts/check-build.sh

# The Helm chart, the systemd units and the dashboards against Grafana's schema (deploy/, its own Go module).
.PHONY: check-deploy
check-deploy:
	./scripts/check-deploy.sh

# Every fuzz target for a bounded budget (FUZZTIME, default 30000 executions each; see scripts/fuzz.sh).
fuzz:
	./scripts/fuzz.sh

# The real broker, Prometheus and Alertmanager.
e2e:
	$(GO) test -tags e2e -count=1 -timeout 14m ./e2e/

test: deps fmt-check vet race fuzz check-build check-deploy e2e

# The exporter, the real broker (seeded), Prometheus and Alertmanager on loopback; Ctrl-C stops all.
# e2e's TestDemo runs it headless (part of `make e2e`, so of `make test`).
.PHONY: demo
demo:
	./scripts/demo.sh
