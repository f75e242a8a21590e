# Development tasks for caravela_flow and its demo site.
# Tools run from .venv/bin explicitly; nothing needs an activated venv.

PYTHON ?= python3.11
PORT ?= 8000
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed
LINT_PATHS := caravela_flow demo_site tests
SYSTEM_PACKAGES := chromium redis-server
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help venv demo-venv demo demo-workers migrate lint format test bench node-deps js deps-system clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

venv: $(STAMP) ## Create .venv with everything: the demo's packages, test and lint tools, caravela_flow (editable)

demo-venv: $(DEMO_STAMP) ## Create .venv with only what the demo needs to run

$(STAMP): requirements.txt $(DEMO_STAMP)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(DEMO_STAMP): requirements-demo.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements-demo.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

migrate: demo-venv ## Apply database migrations
	$(BIN)/python manage.py migrate --noinput

demo: node-deps js migrate ## Serve the demo on 127.0.0.1, port PORT (default 8000), via daphne
	$(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

demo-workers: demo-venv node-deps js migrate deps-system ## The demo in worker mode: private Redis, two runworker processes, daphne; Ctrl-C stops all
	PORT=$(PORT) $(BIN)/python demo_site/demo_workers.py

lint: venv ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy caravela_flow

format: venv ## Fix imports and reformat
	$(BIN)/ruff check --fix-only $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

node-deps: ## Install JavaScript dependencies: Alpine.js for the demo (if package.json exists)
	@if [ -f package.json ]; then \
		if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; \
		else npm install --no-audit --no-fund; fi; \
	fi

js: node-deps ## Build the Svelte components with Vite (demo_site/frontend/ -> demo_site/frontend/dist/)
	npm run build --silent

deps-system: ## apt-get install Chromium and redis-server if missing
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
		echo "Installing:$$missing"; \
		$(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y $$missing; \
	fi

.PHONY: docs matrix
# The docs' Sphinx extensions and the noxfile are linted too.
LINT_PATHS += docs/conf.py docs/_ext noxfile.py

docs: venv ## Build the Sphinx docs into docs/_build/html (warnings are errors)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

test: venv deps-system node-deps js lint docs ## Lint, build the docs, then run the Python and JavaScript test suites
	$(BIN)/pytest
	$(BIN)/python -W error manage.py test --noinput
	@if [ -d tests/js ]; then echo "node --test tests/js/"; node --test tests/js/; fi

matrix: venv deps-system ## The version matrix (noxfile.py): oldest and newest releases, redis-py 7 and 8; sdist/wheel checks
	$(BIN)/nox

bench: venv deps-system ## Run the benchmarks (reports, not tests); ARGS=--quick for a smoke run
	PYTHON=$(BIN)/python bash tests/benchmarks/run_all.sh $(ARGS)

clean: ## Remove caches and build output (keeps .venv and the database)
	rm -rf .mypy_cache .ruff_cache .pytest_cache .nox build dist docs/_build *.egg-info
	find . -path ./$(VENV) -prune -o -path ./node_modules -prune -o \
		-name __pycache__ -type d -exec rm -rf {} +
