"""The fault-injection suite's settings, its figures and the report.

`make test` runs every fault here at a small scale (the fast subset: a couple
of minutes) and asserts the "want 0" figures. `make faults` sets
SANDLOT_FAULTS=full: the counts the issue names, the faults that take minutes
(the 60 s outage), and at the end `benchmarks/reliability.md` with one row per
fault, written whether the fault's test passed or not.
"""

from __future__ import annotations

import base64
import datetime
import os
import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import sandlot
from conftest import REPO

from .harness import remove_firewall_rules

FULL = os.environ.get("SANDLOT_FAULTS") == "full"
REPORT = REPO / "benchmarks" / "reliability.md"
LOCAL_CLUSTER_STATE = Path(os.environ.get("SANDLOT_CLUSTER_STATE", "/var/lib/sandlot-cluster"))


@dataclass(frozen=True)
class Scale:
    """How many of each fault one run injects."""

    waiters: int
    waiters_410: int
    execs: int
    follow_lines: int
    exec_timeouts: int
    exec_cancellations: int
    killed_clients: int
    throttle_rates: tuple[float, ...]
    throttle_rounds: int
    fuzz_examples: int
    outage_seconds: int


SCALE = (
    Scale(
        waiters=200,
        waiters_410=50,
        execs=50,
        follow_lines=100_000,
        exec_timeouts=100,
        exec_cancellations=100,
        killed_clients=100,
        throttle_rates=(0.1, 0.3, 0.5),
        throttle_rounds=20,
        fuzz_examples=300,
        outage_seconds=60,
    )
    if FULL
    else Scale(
        waiters=20,
        waiters_410=10,
        execs=10,
        follow_lines=10_000,
        exec_timeouts=10,
        exec_cancellations=10,
        killed_clients=10,
        throttle_rates=(0.3,),
        throttle_rounds=4,
        fuzz_examples=30,
        outage_seconds=60,
    )
)


@dataclass(frozen=True)
class Row:
    """One fault's figures, as the report shows them."""

    fault: str
    runs: str  # what was injected, how often
    lost_or_wrong: str  # what went missing or was misreported, with what was wanted
    recovery: str  # time to recover, latency, or what else bounds the harm
    ok: bool  # every "want 0" figure was 0


ROWS: list[Row] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "full_only: a fault only `make faults` injects (too slow for `make test`)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if FULL:
        return
    deselected = [item for item in items if item.get_closest_marker("full_only")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("full_only")]


@pytest.fixture(scope="session")
def scale() -> Scale:
    return SCALE


def is_local_cluster(kubeconfig: str) -> bool:
    """True if `kubeconfig` reaches the cluster tests/cluster/cluster.sh runs on this machine."""
    ca = LOCAL_CLUSTER_STATE / "pki" / "ca.crt"
    if not kubeconfig or not Path(kubeconfig).exists() or not ca.exists():
        return False
    cluster = yaml.safe_load(Path(kubeconfig).read_text())["clusters"][0]["cluster"]
    return bool(
        cluster.get("server") == "https://127.0.0.1:6443"
        and base64.b64decode(cluster.get("certificate-authority-data", "")) == ca.read_bytes()
    )


@pytest.fixture(scope="session", autouse=True)
def no_firewall_left_behind(kubeconfig: str) -> Iterator[None]:
    """Faults are injected into the local cluster only; and a run killed in the
    middle of the outage fault may have left its firewall rule."""
    if not is_local_cluster(kubeconfig):
        pytest.skip(
            f"faults are injected into the local cluster only (make cluster); KUBECONFIG={kubeconfig} is another"
        )
    remove_firewall_rules()
    yield
    remove_firewall_rules()


@pytest.fixture(scope="session")
def record() -> Callable[[Row], None]:
    """Adds a row to the report; call it before asserting, so failures are reported too."""
    return ROWS.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if ROWS:
        terminalreporter.section("fault figures" + ("" if FULL else " (fast subset; make faults for the full counts)"))
        for row in ROWS:
            terminalreporter.line(f"{row.fault}: {row.runs} | {row.lost_or_wrong} | {row.recovery}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if FULL and ROWS:
        write_report(REPORT, ROWS)


def write_report(path: Path, rows: list[Row]) -> None:
    order = {name: i for i, name in enumerate(FAULT_ORDER)}
    lines = [
        "# Reliability under faults",
        "",
        "Written by `make faults` (tests/faults/): each fault injected on the local",
        "single-node cluster against the real API server, kubelet and containerd.",
        "Every figure marked *want 0* is asserted by the suite; `make test` runs the",
        "same tests at a small scale. A run of some faults only (`-k`) keeps the other",
        "faults' rows from the run before.",
        "",
        f"Run: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, sandlot {sandlot.__version__}, "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.",
        "",
        "| fault | runs | lost or wrong | recovery | all want-0 figures met |",
        "|---|---|---|---|---|",
    ]
    table: dict[str, list[str]] = {}
    for row in sorted(rows, key=lambda r: order.get(r.fault, len(order))):
        cells = [row.fault, row.runs, row.lost_or_wrong, row.recovery, "yes" if row.ok else "**no**"]
        line = "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
        table.setdefault(row.fault, []).append(line)
    # A run of some faults only (pytest -k) keeps the earlier rows of the others.
    if path.exists():
        for line in path.read_text().splitlines():
            fault = line[2:].split(" | ", 1)[0] if line.startswith("| ") else ""
            if fault in order and fault not in {r.fault for r in rows}:
                table.setdefault(fault, []).append(line)
    for fault in sorted(table, key=lambda f: order.get(f, len(order))):
        lines += table[fault]
    lines += [
        "",
        "How each fault is made: `tests/cluster/cluster.sh restart kube-apiserver` kills the",
        "API server (SIGKILL) and starts it with the same flags; the outage is an iptables",
        "DROP rule on the node address 172.30.255.1 port 6443 (the clients under test use",
        "that address; the cluster's own components use 127.0.0.1); 410 Gone is forced by",
        "compacting etcd while the API server is away; 429 and 503 come from a TLS proxy",
        "in the harness (tests/faults/proxy.py) between the client and the API server.",
        "",
    ]
    path.write_text("\n".join(lines))


FAULT_ORDER = [
    "API server restarted while sandboxes are waited on",
    "API server unreachable (firewall) during waits and a follow",
    "etcd compaction: 410 Gone on the watch",
    "API server restarted during execs",
    "API server restarted during a follow",
    "exec timeouts",
    "exec cancellations",
    "client SIGKILLed 0-200 ms after create",
    "429/503 injected by a proxy",
    "fuzzed create/exec/wait/volume arguments",
]
