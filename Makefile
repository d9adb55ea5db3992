# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test check pytest bench build deploy clean

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

## Lint, type-check, then every test.
test: check pytest

check: $(STAMP)
	@echo ">> ruff"
	@$(BIN)/ruff check functions infra tests
	@$(BIN)/ruff format --check functions infra tests
	@echo ">> mypy (strict on functions/)"
	@$(BIN)/mypy

pytest: $(STAMP)
	@echo ">> pytest"
	@$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .aws-sam layers/build .pytest_cache .mypy_cache .ruff_cache
