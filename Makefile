# lazydisk: run `make help` for the targets.
GO      ?= go
BIN     ?= bin/lazydisk
PKGS    ?= ./...
# Tests run with the race detector; all of them take well under a minute.
TESTFLAGS ?= -count=1 -race -timeout 15m

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/lazydisk
	$(GO) build -trimpath -o $(BIN) ./cmd/lazydisk

.PHONY: test
test: ## Run all tests (unit, in-process registry round trips, CLI)
	$(GO) test $(TESTFLAGS) $(PKGS)

.PHONY: demo
demo: ## Convert the built-in sample disk to eStargz end to end, offline
	$(GO) run ./cmd/lazydisk demo

.PHONY: bench
bench: build ## Benchmarks against the reference tools (needs qemu-utils, e2fsprogs; see docs/benchmarks.md)
	bash internal/bench/run.sh

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

.PHONY: clean
clean: ## Remove build output and benchmark data
	rm -rf bin .bench
