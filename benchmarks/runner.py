"""Runs every (scenario, client, repetition) in a fresh worker process (`run.py --worker`)
and adds what the API server saw; collects a scenario's rows."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks import clients
from benchmarks.cluster import KUBECTL, NAMESPACE, kubectl
from benchmarks.measure import Figures, audit_log_size, audited, open_watches
from benchmarks.report import Row, median_row
from benchmarks.scenarios.base import Scenario

WORKER_SCRIPT = Path(__file__).with_name("run.py")


def work(scenario: Scenario, client_name: str, size: int) -> Figures:
    """One repetition, in the worker process: the client's library imported first, then
    the scenario measured. A client without the scenario's operation gets outcome "n/a"."""
    os.environ.setdefault("SANDLOT_NAMESPACE", NAMESPACE)
    client = clients.load(client_name)
    try:
        return scenario.measure(client, size)
    except NotImplementedError:
        return {"outcome": "n/a"}


def run_worker(scenario: Scenario, client: str, size: int) -> Figures:
    """One repetition in a fresh process. Open watches are sampled from here when the
    scenario asks, so the sampling is not charged to the client. A run past its
    scenario's time limit is stopped and reported as such, as is a peer's run that
    fails; a failing run of the base client (sandlot) ends the benchmark."""
    offset = audit_log_size()
    watches: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            watches.append(open_watches())

    sampler = threading.Thread(target=sample, daemon=True)
    if scenario.samples_open_watches:
        sampler.start()
    try:
        proc = subprocess.run(
            [sys.executable, str(WORKER_SCRIPT), "--worker", scenario.name, client, str(size)],
            capture_output=True,
            text=True,
            timeout=scenario.time_limit_s,
        )
    except subprocess.TimeoutExpired:
        return {"outcome": f"stopped after {scenario.time_limit_s} s"}
    finally:
        done.set()
    if sampler.is_alive():
        sampler.join()
    if proc.returncode != 0:
        if client == scenario.base_client:
            raise RuntimeError(f"{scenario.name}/{client}/{size} failed:\n{proc.stderr[-3000:]}")
        # A peer that fails is a result (e.g. a request the API server timed out), not
        # the end of the run: its row says what it raised.
        print(f"{scenario.name}/{client}/{size} failed:\n{proc.stderr[-3000:]}", file=sys.stderr, flush=True)
        last = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"outcome": f"failed: {last[0][:200]}"}
    result: Figures = json.loads(proc.stdout.strip().splitlines()[-1])
    window = result.pop("_window", None)
    # A client whose execs share one long-lived exec (sandlot's agent connection):
    # the server's time for that exec is the whole run's, not one command's.
    one_session = result.pop("_one_exec_session", False)
    # Sandboxes the run made, for requests per sandbox.
    sandboxes = result.pop("_sandboxes", None)
    if window:
        time.sleep(1)  # let the audit log catch up
        requests, exec_ms = audited(window, offset)
        result["api_requests"] = requests
        if sandboxes:
            result["requests_per_sandbox"] = round(requests / sandboxes, 2)
        if scenario.reports_server_exec_time and exec_ms and not one_session:
            result["server_p50_ms"] = round(statistics.median(exec_ms), 1)
    if scenario.samples_open_watches:
        result["max_open_watches"] = max(watches, default=0)
    return result


def clean_namespace() -> None:
    """An empty benchmark namespace and a quiet node: the deletion is graceful, so it
    returns once the kubelet has stopped the earlier run's containers."""
    subprocess.run([KUBECTL, "create", "namespace", NAMESPACE], capture_output=True)
    kubectl("delete", "pods", "--all", "--grace-period=1", "--wait=true", "--timeout=300s")


def run_scenario(scenario: Scenario, quick: bool, started: float) -> dict[int, dict[str, Row]]:
    """Rows by size and client, each printed as it is done with the minutes since
    `started` (a time.monotonic() value)."""
    rows: dict[int, dict[str, Row]] = {}
    with scenario.surroundings():
        for size in scenario.quick_sizes if quick else scenario.full_sizes:
            # Rounds of one run per client, each round in a rotated order, so no
            # client always runs right after the same one.
            order = list(scenario.clients)
            reps = {c: 1 if quick or c in scenario.runs_once else scenario.repeats for c in order}
            results: dict[str, list[Figures]] = {c: [] for c in order}
            for round_ in range(max(reps.values())):
                for client in order[round_ % len(order) :] + order[: round_ % len(order)]:
                    if len(results[client]) < reps[client]:
                        clean_namespace()
                        results[client].append(run_worker(scenario, client, size))
            for client in order:
                row = {"reps": reps[client], **median_row(results[client])}
                rows.setdefault(size, {})[client] = row
                print(
                    f"[{(time.monotonic() - started) / 60:4.1f} min] {scenario.name:16} size {size:<7} {client:18} "
                    + ", ".join(f"{k}={v}" for k, v in row.items() if not k.startswith("_")),
                    flush=True,
                )
    return rows
