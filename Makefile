# snapsweep's developer commands. `make test` is the one test command, the
# one CI runs (.ci/run).

SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# Fuzzing time per fuzz target.
FUZZTIME ?= 60s
# Benchmarks to run (a -bench pattern) and how often (for benchstat).
BENCH ?= .
BENCHCOUNT ?= 1

.PHONY: help test build fuzz run bench container-check terraform-fmt clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

test: ## emulators, terraform fmt -check, go vet, go test -race ./..., container check
	bash scripts/test.sh

build: ## static binary bin/snapsweep, version stamped
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/snapsweep ./cmd/snapsweep

fuzz: ## run every fuzz target for FUZZTIME (default 60s)
	bash scripts/emulators.sh bash -c 'set -euo pipefail; \
	found=0; \
	for pkg in $$($(GO) list ./...); do \
		list=$$($(GO) test -list "^Fuzz" "$$pkg"); \
		for target in $$(grep "^Fuzz" <<<"$$list" || true); do \
			found=1; \
			echo "==> $$pkg $$target for $(FUZZTIME)"; \
			$(GO) test -run "^$$" -fuzz "^$$target\$$" -fuzztime "$(FUZZTIME)" "$$pkg"; \
		done; \
	done; \
	if [[ $$found == 0 ]]; then echo "no fuzz targets found"; fi'

run: ## run snapsweep serve locally against the emulators
	bash scripts/run-local.sh

bench: ## run the benchmarks and write BENCHMARKS.md (scripts/bench.sh); with BENCH=pattern, run those BENCHCOUNT times instead
	@if [[ '$(BENCH)' == '.' ]]; then \
		bash scripts/bench.sh; \
	else \
		bash scripts/emulators.sh $(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count $(BENCHCOUNT) ./...; \
	fi

.PHONY: chaos
chaos: ## chaos run: 2+ serve processes, faulty Compute, Firestore freeze, SIGKILLs; checks the invariants (docs/chaos.md; CHAOS_RUNS=N, ARGS=driver flags)
	bash scripts/chaos.sh $(ARGS)

.PHONY: chaos-fleet
chaos-fleet: ## the chaos run at fleet scale: 88 sessions (>5,000 events, >10,000 deliveries), quota 60/min (CHAOS_RUNS=N, ARGS=more driver flags)
	bash scripts/chaos.sh --sessions 88 --quota 60 $(ARGS)

container-check: ## build as the Dockerfile does; check it runs as non-root and answers /health
	bash scripts/container-check.sh

terraform-fmt: ## format the Terraform module
	terraform fmt -recursive terraform

clean: ## remove build output
	rm -rf bin
