"""The benchmark runner keeps working: one quick run at the smallest sizes.
Timing is never asserted here; only that every scenario ran for every client
and that no client lost data."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_quick_run_covers_every_scenario_and_client(kubeconfig: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = (tmp_path / "results.md").read_text()
    for scenario in ["fanout", "waiting", "exec_latency", "exec_throughput", "log_follow", "user_namespace", "bridge"]:
        assert f"## {scenario}" in results
    for client in ["sandlot", "kubernetes", "kubernetes_asyncio", "kubectl"]:
        assert f"| {client} |" in results
    rows: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        if "] " in line and " size " in line:
            rows.setdefault(line.split("] ", 1)[1].split()[0], []).append(line)
    assert {scenario: len(lines) for scenario, lines in rows.items()} == {
        "fanout": 6,  # sandlot three times: its defaults, unrestricted, and without a user namespace
        "waiting": 4,
        "exec_latency": 4,
        "exec_throughput": 4,
        "log_follow": 4,
        "user_namespace": 1,
        "bridge": 1,
    }
    # sandlot must not lose anything; a baseline that does is reported as such (and not timed).
    for scenario, whole, lost in [
        ("exec_throughput", "intact=True", "intact=False"),
        ("log_follow", "complete=True", "complete=False"),
        ("fanout", "correct=3/3", "correct="),
    ]:
        for line in rows[scenario]:
            assert whole in line if " sandlot " in line else (whole in line or lost in line), line
    assert all("mb_per_s=None" in line for line in rows["exec_throughput"] if "intact=False" in line)
    assert all("max_open_watches=" in line for line in rows["waiting"])
    counted = [line for scenario, lines in rows.items() if scenario != "bridge" for line in lines]
    requests = [re.search(r" api_requests=(\d+)", line) for line in counted]
    assert all(found and int(found[1]) > 0 for found in requests), "requests are counted at the API server"
    assert sorted(p.name for p in (tmp_path / "charts").iterdir())
