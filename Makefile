# lazydisk: run `make help` for the targets.
GO      ?= go
BIN     ?= bin/lazydisk
PKGS    ?= ./...
# Tests run with the race detector; all of them take well under a minute.
TESTFLAGS ?= -count=1 -race -timeout 15m
# Tests that measure a process's memory skip under the race detector, whose
# shadow memory would count in it; make test runs them again without it.
NORACE_TESTS ?= ^TestServeMemoryBudget$$
# Tests link containers/storage (its real partial-pull code checks our
# zstd:chunked output); these tags leave out the graph drivers that need C
# headers. Without them, go test needs libbtrfs-dev installed.
TAGS    ?= exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper
# The benchmark and research programs of make bench are a module of their
# own (bench/go.mod), so the product module does not carry them; test and
# lint cover it too, and deploy/ (the Kubernetes manifests and their test,
# which links k8s.io/api), another module of its own.
BENCHMOD ?= bench

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/lazydisk
	$(GO) build -trimpath -o $(BIN) ./cmd/lazydisk

# make image: lazydisk's own multi-platform image, an OCI layout in
# IMAGE_DIR (push it with skopeo copy --all oci:dist/image:TAG docker://...).
# The binaries are static and trimmed; every timestamp is SOURCE_DATE_EPOCH
# (default: the commit's time), so a commit gives the same digests.
IMAGE_DIR        ?= dist/image
IMAGE_PLATFORMS  ?= linux/amd64 linux/arm64
IMAGE_VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
IMAGE_REVISION   ?= $(shell git rev-parse HEAD 2>/dev/null)
IMAGE_TAG        ?= $(subst +,_,$(IMAGE_VERSION))
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

.PHONY: image
image: ## Build lazydisk's image for IMAGE_PLATFORMS into the OCI layout IMAGE_DIR (no Docker)
	@set -e; for p in $(IMAGE_PLATFORMS); do \
		echo "building dist/bin/$$p/lazydisk"; \
		CGO_ENABLED=0 GOOS=$${p%%/*} GOARCH=$${p#*/} $(GO) build -trimpath -ldflags='-s -w' -o dist/bin/$$p/lazydisk ./cmd/lazydisk; \
	done
	$(GO) run ./hack/mkimage -out $(IMAGE_DIR) -tag $(IMAGE_TAG) -created $(SOURCE_DATE_EPOCH) \
		-version $(IMAGE_VERSION) -revision $(IMAGE_REVISION) \
		$(foreach p,$(IMAGE_PLATFORMS),-binary $(p)=dist/bin/$(p)/lazydisk)

.PHONY: test
test: ## Run all tests (unit, in-process registry round trips, CLI; containers/storage partial pulls when root; the external example module)
	$(GO) test -tags $(TAGS) $(TESTFLAGS) $(PKGS)
	$(GO) test -tags $(TAGS) -count=1 -timeout 5m -run '$(NORACE_TESTS)' ./cmd/lazydisk/
	$(GO) -C $(BENCHMOD) test -tags $(TAGS) $(TESTFLAGS) ./...
	cd examples/embed && $(GO) test $(TESTFLAGS) ./...
	$(GO) -C deploy test $(TESTFLAGS) ./...

# The end-to-end tests with Debian's podman (lazydisk store as podman's
# additional layer store): build tag e2e, root, FUSE and overlayfs; they skip
# and say why when podman (apt-get install podman fuse3) is missing.
.PHONY: test-e2e
test-e2e: ## Run the end-to-end tests with podman (lazydisk store; needs root, podman, fuse3)
	$(GO) test -tags $(TAGS),e2e $(TESTFLAGS) -run 'Podman' ./cmd/lazydisk/

# FUZZTIME bounds each fuzz target; CI runs them briefly on every change,
# with the seed corpus from toc/testdata/fuzz. It is a count, not a duration:
# go1.26's fuzz coordinator can report "context deadline exceeded" when a
# duration runs out while a worker is busy (go.dev/issue/75804, fixed in
# go1.27). FUZZMINIMIZE=0 turns off minimizing inputs: minimizing each new
# interesting 20 KB input stalls both workers (up to a minute each by
# default; even at 5s each, one clean-clone run spent 3 minutes on 46 of
# them). A failing input is still written to testdata/fuzz, unminimized.
FUZZTIME ?= 100000x
FUZZMINIMIZE ?= 0

# The cosign CLI the interop tests run (cmd/lazydisk/cosign_test.go); they
# skip when it is missing. Built once into $(go env GOPATH)/bin, about 6
# minutes on 2 cores; skipped when that version is already there.
COSIGN_VERSION ?= v3.1.3
COSIGN_BIN     = $(shell $(GO) env GOPATH | cut -d: -f1)/bin/cosign

.PHONY: cosign
cosign: ## Install the cosign CLI (COSIGN_VERSION) the interop tests use, unless present
	@if "$(COSIGN_BIN)" version --json 2>/dev/null | grep -q '"gitVersion": "$(COSIGN_VERSION)"'; then \
		echo "cosign $(COSIGN_VERSION) is installed: $(COSIGN_BIN)"; \
	else \
		echo "building cosign $(COSIGN_VERSION) into $(COSIGN_BIN) (about 6 minutes the first time)"; \
		GOBIN="$(dir $(COSIGN_BIN))" GOFLAGS= $(GO) install github.com/sigstore/cosign/v3/cmd/cosign@$(COSIGN_VERSION); \
	fi

# actionlint checks action.yml (through .github/workflows/action.yml, which
# uses it as ./) and the workflows, in make lint. Built once into
# $(go env GOPATH)/bin, like cosign; skipped when that version is there.
ACTIONLINT_VERSION ?= v1.7.12
ACTIONLINT_BIN     = $(shell $(GO) env GOPATH | cut -d: -f1)/bin/actionlint

.PHONY: actionlint
actionlint: ## Install actionlint (ACTIONLINT_VERSION), which make lint runs, unless present
	@if "$(ACTIONLINT_BIN)" -version 2>/dev/null | grep -qx '$(ACTIONLINT_VERSION)'; then \
		echo "actionlint $(ACTIONLINT_VERSION) is installed: $(ACTIONLINT_BIN)"; \
	else \
		echo "building actionlint $(ACTIONLINT_VERSION) into $(ACTIONLINT_BIN)"; \
		GOBIN="$(dir $(ACTIONLINT_BIN))" GOFLAGS= $(GO) install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION); \
	fi

.PHONY: fuzz
fuzz: ## Fuzz the footer, TOC and qcow2 parsers for FUZZTIME each (default 100000 runs)
	$(GO) test -tags $(TAGS) -run '^$$' -fuzz '^FuzzRead$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./toc/
	$(GO) test -tags $(TAGS) -run '^$$' -fuzz '^FuzzParsers$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./toc/
	$(GO) test -tags $(TAGS) -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./qcow2/

.PHONY: demo
demo: ## Convert the built-in sample disk to eStargz end to end, offline
	$(GO) run ./cmd/lazydisk demo

.PHONY: bench
bench: build ## Benchmarks against the reference tools (needs qemu-utils, e2fsprogs, libnbd-bin, nbdkit, podman; see docs/benchmarks.md)
	bash bench/run.sh
	bash bench/run.sh -read
	bash bench/run.sh -serve
	bash bench/run.sh -sparse
	bash bench/run.sh -store
	bash bench/run.sh -load
	bash bench/run.sh -guest

.PHONY: lint
lint: actionlint ## gofmt, go vet (every module) and actionlint (action.yml, workflows, the workflows in docs/ci.md)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags $(TAGS) $(PKGS)
	$(GO) vet -tags $(TAGS),e2e ./cmd/lazydisk/
	$(GO) -C $(BENCHMOD) vet -tags $(TAGS) ./...
	cd examples/embed && $(GO) vet ./...
	$(GO) -C deploy vet ./...
	bash action/lint.sh $(ACTIONLINT_BIN)

.PHONY: clean
clean: ## Remove build output and benchmark data
	rm -rf bin .bench
