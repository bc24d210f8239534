# The test target is what CI runs (.ci/run) and what README tells newcomers.
GO      ?= go
PROMTOOL ?= promtool

.PHONY: all build test unit race rules dashboards e2e fuzz fmt-check vet deps

all: build

build:
	./scripts/build.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

race:
	$(GO) test -race -count=1 ./...

test: fmt-check vet race
