# sandlot: `make demo` for a first run, `make test` for everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
LOCAL_KUBECONFIG := $(CURDIR)/.cluster/kubeconfig
# The local cluster unless the caller names another one.
TEST_KUBECONFIG ?= $(LOCAL_KUBECONFIG)

.PHONY: help cluster cluster-down cluster-status cluster-figures venv develop lint test demo bench

help:
	@echo "make demo            start the local cluster if none is configured, install sandlot, run examples/quickstart.py"
	@echo "make test            lint, Rust tests, and every pytest suite (e2e on the local cluster)"
	@echo "make bench           sandlot against the kubernetes clients and kubectl: benchmarks/results.md"
	@echo "make cluster         build and start the local single-node Kubernetes (idempotent)"
	@echo "make cluster-down    stop it; make cluster-status tells what runs"

cluster:
	@bash tests/cluster/cluster.sh up

cluster-down:
	@bash tests/cluster/cluster.sh down

cluster-status:
	@bash tests/cluster/cluster.sh status

venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

# Builds the Rust extension and installs sandlot into .venv (editable).
develop: venv
	$(BIN)/maturin develop -q --release

lint: venv
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(BIN)/ruff check python tests examples benchmarks
	$(BIN)/ruff format --check python tests examples benchmarks
	$(BIN)/mypy

test: cluster develop lint
	cargo test --workspace --exclude sandlot-py
	$(BIN)/python -m mypy.stubtest sandlot._native
	KUBECONFIG=$(TEST_KUBECONFIG) $(BIN)/pytest

demo: develop
	@if [ -z "$$KUBECONFIG" ] && [ ! -f "$$HOME/.kube/config" ] && [ -z "$$KUBERNETES_SERVICE_HOST" ]; then \
		$(MAKE) --no-print-directory cluster && export KUBECONFIG=$(LOCAL_KUBECONFIG); \
	fi; \
	$(BIN)/python examples/quickstart.py

# Every scenario for every client, side by side: benchmarks/results.md and charts.
bench: cluster develop
	$(BIN)/pip install -q -r benchmarks/requirements.txt
	KUBECONFIG=$(LOCAL_KUBECONFIG) $(BIN)/python benchmarks/run.py

cluster-figures: cluster venv
	$(BIN)/python benchmarks/cluster_figures.py 10
