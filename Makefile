# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-unit test-repeat check pytest bench build deploy clean browser soak chaos memory

install: $(STAMP)

$(STAMP): pyproject.toml
	@echo ">> creating $(VENV) and installing the project with its dev dependencies"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet --progress-bar off -e '.[dev]'
	@touch $(STAMP)

## Start the whole stack locally until Ctrl-C: DynamoDB (moto), simulated GPU endpoint, gateway.
run: $(STAMP)
	@$(BIN)/python -m devstack

## Lint, type-check, then every test (the dashboard's test needs Chromium: `make browser`).
## What it installs: the project and its dev dependencies into .venv (pip, once), Debian's
## chromium and chromium-driver when root and missing (apt-get), and, for the build test,
## aws-sam-cli into .venv-sam followed by `sam build` (needs python3.12; it skips without).
## The tests that need real tokenizer files read ../shared, or $GATEWAY_SHARED_DIR; without
## them, the token tests run on what `make run` downloaded and skip the rest (README).
test: check browser pytest

## Debian's Chromium and its WebDriver for the dashboard's browser test, installed with
## apt-get when missing and this is root; otherwise that test skips and says why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo ">> installing chromium and chromium-driver (apt-get) for the dashboard test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium chromium-driver >/dev/null \
		|| echo ">> apt-get failed: the dashboard browser test will skip"; \
	else \
		echo ">> chromium/chromedriver missing and not root: the dashboard browser test will skip"; \
	fi

check: $(STAMP)
	@echo ">> ruff"
	@$(BIN)/ruff check functions infra tests
	@$(BIN)/ruff format --check functions infra tests
	@echo ">> mypy (strict on functions/, checked on infra/)"
	@$(BIN)/mypy
	@echo ">> import-linter (the layers of docs/ARCHITECTURE.md)"
	@PYTHONPATH=functions $(BIN)/lint-imports --no-cache

pytest: $(STAMP)
	@echo ">> pytest on 2 workers (tests/test_build.py installs aws-sam-cli into $(SAM_VENV) and runs sam build; the soak tests run in make soak)"
	@$(BIN)/python -m pytest -n 2 -m "not soak"

## The newcomer tier alone (part of `make test`): README's quick start from a fresh clone
## with a local Hub mirror, then every curl, SDK and CLI example in README.md and docs/.
.PHONY: test-examples
test-examples: $(STAMP)
	@$(BIN)/python -m pytest -q -p no:schemathesis -p no:hypothesispytest tests/docs

## The fast unit tier alone (fakes, no sockets; seconds): tests/unit. The fuzzing plugins
## (schemathesis, hypothesis) serve tests/hardening only; not loading them saves ~3 s.
test-unit: $(STAMP)
	@$(BIN)/python -m pytest -q -p no:schemathesis -p no:hypothesispytest tests/unit

## The whole pytest suite N times in a row (default 10), stopping at the first failing run:
## evidence that no test is flaky (issue 12). Each run's log: .test-repeat/run-<i>.log.
N ?= 10
test-repeat: $(STAMP)
	@mkdir -p .test-repeat
	@for i in $$(seq 1 $(N)); do \
		start=$$(date +%s); \
		if $(BIN)/python -m pytest -q -p no:cacheprovider -n 2 -m "not soak" > .test-repeat/run-$$i.log 2>&1; then \
			echo ">> run $$i/$(N) green in $$(( $$(date +%s) - start )) s: $$(tail -1 .test-repeat/run-$$i.log)"; \
		else \
			echo ">> run $$i/$(N) FAILED after $$(( $$(date +%s) - start )) s (.test-repeat/run-$$i.log):"; \
			grep -E '^(FAILED|ERROR)' .test-repeat/run-$$i.log; exit 1; \
		fi; \
	done; echo ">> $(N) runs in a row green"

## Usage at scale at issue 10's size (not part of `make test`, which runs it scaled down):
## 2,000 requests at concurrency 64 on one key against the conflict-emulating DynamoDB,
## then the same with DynamoDB paused. Deadlines scale with moto's speed here (~60 calls/s).
SOAK_ENV ?= USAGE_LOAD_REQUESTS=2000 USAGE_LOAD_CONCURRENCY=64 USAGE_LOAD_DEADLINES=4,4,4 USAGE_LOAD_PAUSE_SECONDS=16
soak: $(STAMP)
	@echo ">> soak: $(SOAK_ENV)"
	@$(SOAK_ENV) $(BIN)/python -m pytest -q -s tests/gateway/usage/test_load.py

## The mixed-fault run of issue 27 (not part of `make test`, which runs it scaled down in
## tests/infra/test_devstack_chaos.py): a stack on free ports, 3,000 requests at concurrency
## 48 over four keys, dropped and abandoned clients, upstream faults, two 8 s DynamoDB
## pauses and a replica stopped for 10 s; exits 1 on any violated invariant. Options in
## CHAOS_ARGS, e.g. "--requests 500 --concurrency 16 --gateway-log /tmp/gateway.log".
CHAOS_ARGS ?=

chaos: $(STAMP)
	@$(BIN)/python -m devstack.chaos $(CHAOS_ARGS)

## Counting memory, every family x every hostile text (docs/TOKENS.md, "What counting
## costs"), each count checked against the whole text's; `make test` runs four texts.
memory: $(STAMP)
	@PYTHONPATH=functions:infra $(BIN)/python -m tests.gateway.tokens.measure_memory --check

clean:
	rm -rf $(VENV) .aws-sam layers/build .pytest_cache .mypy_cache .ruff_cache

## ---- The SAM stack: `make build`, `make deploy`, `make validate` (docs/DEPLOY.md) ----
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_STAMP := $(SAM_VENV)/.installed
SAM_ENV := SAM_CLI_TELEMETRY=0
# `sam build` without a container needs python3.12 on PATH (the functions' runtime).
# The first python3.12 that really runs (pyenv shims may not), as its real executable path.
ifndef PYTHON312
PYTHON312 := $(shell for c in python3.12 $(HOME)/.pyenv/versions/3.12*/bin/python3.12; do \
	"$$c" -c 'import sys; assert sys.version_info[:2] == (3, 12); print(sys.executable)' \
	2>/dev/null && break; done)
endif
# Models config to bundle tokenizers for (the MODELS_CONFIG JSON), used if the file exists.
MODELS_CONFIG_FILE ?= models.json
# A directory of tokenizer folders to copy from instead of downloading from the Hub.
TOKENIZERS_FROM ?=
LAYER_DIR := layers/build/tokenizers
LAYER_ARGS := --out $(LAYER_DIR) \
	$(if $(or $(wildcard $(MODELS_CONFIG_FILE)),$(filter-out file,$(origin MODELS_CONFIG_FILE))),--config $(MODELS_CONFIG_FILE)) \
	$(if $(TOKENIZERS_FROM),--from-dir $(TOKENIZERS_FROM))

.PHONY: build-layer validate

# aws-sam-cli is heavy and pins its own dependencies: it gets a venv of its own.
$(SAM_STAMP):
	@test -n "$(PYTHON312)" || { echo "python3.12 not found: install it (e.g. pyenv install 3.12) or set PYTHON312=/path/to/python3.12" >&2; exit 1; }
	@echo ">> installing aws-sam-cli into $(SAM_VENV) (kept apart from $(VENV))"
	@test -x $(SAM_VENV)/bin/python || $(PYTHON312) -m venv $(SAM_VENV)
	@$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	@$(SAM_VENV)/bin/python -m pip install --quiet --progress-bar off aws-sam-cli
	@$(SAM) --version
	@touch $(SAM_STAMP)

## The tokenizer layer only: layers/build/tokenizers (see layers/README.md).
build-layer:
	@echo ">> building the tokenizer layer"
	@$(PYTHON) layers/build_tokenizers.py $(LAYER_ARGS)

## Tokenizer layer, then `sam build` (python3.12, arm64, no container) into .aws-sam/build.
build: build-layer $(SAM_STAMP)
	@echo ">> sam build (python3.12, arm64, no container)"
	@set -e; start=$$(date +%s); \
	PATH="$$(dirname "$(PYTHON312)"):$$PATH" $(SAM_ENV) $(SAM) build --template-file template.yaml --cached --parallel; \
	echo ">> sam build took $$(( $$(date +%s) - start )) s"
	@echo ">> unzipped sizes (Lambda's limit: 250 MB per function with its layers; the"
	@echo "   public Lambda Web Adapter layer adds a few MB to StreamFunction)"
	@du -sh --apparent-size .aws-sam/build/StreamFunction .aws-sam/build/ApiFunction $(LAYER_DIR)

## Deploy the built stack: guided the first time (writes samconfig.toml), then as saved.
deploy: $(SAM_STAMP)
	@test -f .aws-sam/build/template.yaml || { echo "nothing built: run 'make build' first" >&2; exit 1; }
	@echo ">> sam deploy"
	@$(SAM_ENV) $(SAM) deploy $(if $(wildcard samconfig.toml),,--guided) --capabilities CAPABILITY_IAM

## Lint template.yaml offline (cfn-lint; also `sam validate --lint` once aws-sam-cli is installed).
validate: $(STAMP)
	@echo ">> cfn-lint template.yaml"
	@$(BIN)/cfn-lint template.yaml
	@if [ -x $(SAM) ]; then \
		echo ">> sam validate --lint"; \
		$(SAM_ENV) $(SAM) validate --lint --template-file template.yaml --region "$${AWS_REGION:-us-east-1}"; \
	fi

## ---- Benchmark (not part of `make test`; docs/BENCHMARKS.md) ----
# gpusim directly vs through the gateway, then the gateway's CPU per route and the first
# request of fresh gateway processes (cold instance); results in bench-results/ (git-ignored).
# It ends with this checkout against BASE side by side on one harness: CPU per request and
# TTFT (both running at once, sent requests in turn), then instructions per request (callgrind).
# Options go in BENCH_ARGS, e.g. `make bench BENCH_ARGS="--scale 0.2 --db-latency-ms 5"`.
BENCH_ARGS ?=

bench: $(STAMP)
	@$(BIN)/python -m devstack.bench $(BENCH_ARGS)
	@$(BIN)/python -m devstack.bench.routing
	@echo ">> guardrails: time to first token with input screening, against the guard's own latency"
	@$(BIN)/python -m devstack.guardbench --requests 10 --windows ""
	@echo ">> this checkout against BASE=$(BASE), side by side: CPU per request and TTFT p50"
	@$(MAKE) --no-print-directory bench-instructions INSTRUCTIONS_ARGS="--timed 60 --requests 100"
	@if command -v valgrind >/dev/null; then \
		echo ">> the same, in instructions per request (callgrind)"; \
		$(MAKE) --no-print-directory bench-instructions; \
	else echo ">> valgrind is not installed: no instruction counts (apt-get install valgrind)"; fi

## ---- CPU per request counted in instructions (docs/BENCHMARKS.md, "Counted in instructions") ----
# The gateway under callgrind, this checkout against BASE (a commit: its functions/ are
# exported to bench-results/base-functions), buffered and streamed, 100 requests each;
# needs valgrind. Options in INSTRUCTIONS_ARGS, e.g. "--requests 300".
BASE ?= e7419d2
INSTRUCTIONS_ARGS ?=
.PHONY: bench-instructions

bench-instructions: $(STAMP)
	@rm -rf bench-results/base-functions && mkdir -p bench-results/base-functions
	@git archive $(BASE) functions | tar -x -C bench-results/base-functions
	@$(BIN)/python -m devstack.bench.instructions \
		--base bench-results/base-functions/functions $(INSTRUCTIONS_ARGS)

## ---- Cold-start benchmark (not part of `make test`; docs/BENCHMARKS.md, "Cold start") ----
# Lambda init in fresh processes: imports, app build, tokenizer preload, peak RSS; the table
# goes to bench-results/coldstart.md. Options in COLDSTART_ARGS, e.g. "--runs 3".
COLDSTART_ARGS ?=

.PHONY: bench-coldstart

bench-coldstart: $(STAMP)
	@$(BIN)/python -m devstack.coldstart $(COLDSTART_ARGS)

## ---- Guardrails benchmark (not part of `make test`; docs/GUARDRAILS.md) ----
# Time to first token and to the end of a stream with input screening and with output
# screening at several window sizes, against the guard's own latency. Options in
# GUARD_BENCH_ARGS, e.g. "--guard-ms 50 --windows 16,64 --requests 5".
GUARD_BENCH_ARGS ?=

.PHONY: bench-guard

bench-guard: $(STAMP)
	@$(BIN)/python -m devstack.guardbench $(GUARD_BENCH_ARGS)

## ---- Routing benchmark (not part of `make test`; docs/BENCHMARKS.md, "Routing by what
## the GPUs hold") ----
# Three gpusim replicas with finite KV caches; round-robin, weighted P2C and prefix
# affinity side by side on one workload of multi-turn conversations, then affinity with
# one replica's decode slowed 2x. A few minutes; options in ROUTING_BENCH_ARGS, e.g.
# "--scale 0.3". The table also goes to bench-results/routing.md.
ROUTING_BENCH_ARGS ?=

.PHONY: bench-routing

bench-routing: $(STAMP)
	@$(BIN)/python -m devstack.cachebench --out bench-results/routing.md $(ROUTING_BENCH_ARGS)
