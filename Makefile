# sandlot: `make demo` for a first run, `make test` for everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
LOCAL_KUBECONFIG := $(CURDIR)/.cluster/kubeconfig
# The local cluster unless the caller names another one.
TEST_KUBECONFIG ?= $(LOCAL_KUBECONFIG)

.PHONY: help cluster cluster-down cluster-status cluster-scale cluster-scale-down cluster-figures venv develop wheel lint test-unit test faults demo bench

help:
	@echo "make demo            start the local cluster if none is configured, install sandlot, run examples/quickstart.py"
	@echo "make test            everything: make test-unit, make wheel, and the e2e pytest suites on the local cluster"
	@echo "make test-unit       what needs no cluster: lint, Rust tests, the stub check, pytest -m unit"
	@echo "make wheel           the abi3 manylinux wheel users install, into dist/"
	@echo "make faults          each fault (API server restarts and outages, 410, 429/503, killed clients, fuzzing) at full scale: benchmarks/reliability.md"
	@echo "make bench           sandlot against the kubernetes clients and kubectl: benchmarks/results.md"
	@echo "make cluster         build and start the local single-node Kubernetes (idempotent)"
	@echo "make cluster-down    stop it; make cluster-status tells what runs"
	@echo "make cluster-scale   add NODES (default 50) fake KWOK nodes to the running cluster, for RuntimeClass kwok; make cluster-scale-down removes them"

cluster:
	@bash tests/cluster/cluster.sh up

cluster-down:
	@bash tests/cluster/cluster.sh down

cluster-status:
	@bash tests/cluster/cluster.sh status

# The scale cluster: fake nodes beside the real one (tests/cluster/README.md).
NODES ?= 50
cluster-scale:
	@bash tests/cluster/cluster.sh scale up $(NODES)

cluster-scale-down:
	@bash tests/cluster/cluster.sh scale down

venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

# Builds the Rust extension and installs sandlot into .venv (editable).
develop: venv
	$(BIN)/maturin develop -q --release

# The wheel users install: abi3, tagged manylinux by maturin's audit (see
# compatibility in pyproject.toml). The same profile and features as `develop`,
# so after it cargo rebuilds nothing: a few seconds.
wheel: venv
	rm -f dist/sandlot-*.whl
	$(BIN)/maturin build -q --release --out dist

lint: venv
	cargo fmt --all --check
	rustfmt --edition 2024 --check rust/sandlot-core/gate/gate.rs
	clippy-driver --edition 2024 --crate-type bin -C panic=abort --emit metadata -o /tmp/sandlot-gate.rmeta -D warnings rust/sandlot-core/gate/gate.rs
	rustfmt --edition 2024 --check rust/sandlot-core/agent/main.rs
	mkdir -p /tmp/sandlot-lint && rustc --edition 2024 --crate-type rlib --crate-name sandlot_wire -C panic=abort --out-dir /tmp/sandlot-lint rust/sandlot-wire/src/lib.rs
	clippy-driver --edition 2024 --crate-type bin -C panic=abort --emit metadata -o /tmp/sandlot-lint/agent.rmeta -D warnings --extern sandlot_wire=/tmp/sandlot-lint/libsandlot_wire.rlib rust/sandlot-core/agent/main.rs
	cargo clippy --workspace --all-targets -- -D warnings
	$(BIN)/ruff check python tests examples benchmarks
	$(BIN)/ruff format --check python tests examples benchmarks
	$(BIN)/mypy

# Everything that needs no cluster; tests that need none are marked `unit`.
test-unit: develop lint
	cargo test --workspace --exclude sandlot-py
	$(BIN)/python -m mypy.stubtest sandlot._native
	$(BIN)/pytest -m unit

# The e2e suites include tests/faults/ at a small scale (a couple of minutes;
# it restarts the local API server a few times).
test: test-unit cluster wheel
	KUBECONFIG=$(TEST_KUBECONFIG) $(BIN)/pytest -m "not unit"

# The fault-injection suite at the counts of issue 14, on the local cluster only
# (it kills the API server and firewalls it): benchmarks/reliability.md, written
# also when a fault's test fails. About 20 minutes (starting 200 sandboxes on
# 2 cores takes a good part of it), so a test may take up to 30.
faults: cluster develop
	KUBECONFIG=$(LOCAL_KUBECONFIG) SANDLOT_FAULTS=full $(BIN)/pytest tests/faults -m "not unit" --timeout 1800

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
