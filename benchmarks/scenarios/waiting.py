"""Waiting: many pods' phase changes watched at once."""

from __future__ import annotations

import json
import uuid

from benchmarks.clients.base import Client
from benchmarks.cluster import kubectl, pod_manifest
from benchmarks.measure import Figures, Timed
from benchmarks.scenarios.base import Scenario


def waiting(client: Client, n: int) -> Figures:
    """Wait for n pods, created at once beforehand, to run. Each pod makes one phase
    change (Pending to Running) while the client waits; open watches are sampled
    by the runner."""
    batch = uuid.uuid4().hex[:6]
    names = [f"wait-{batch}-{i}" for i in range(n)]
    manifests = "\n---\n".join(json.dumps(pod_manifest(name, labels={"batch": batch})) for name in names)
    kubectl("apply", "-f", "-", stdin=manifests)
    with Timed() as timed:
        client.wait_running(names, f"batch={batch}")
    kubectl("delete", "pod", "-l", f"batch={batch}", "--wait=false", "--grace-period=1")
    figures = timed.figures(client)
    return {**figures, "cpu_ms_per_1000_changes": round(figures["cpu_s"] * 1e6 / n)}


SCENARIO = Scenario(
    name="waiting",
    measure=waiting,
    full_sizes=(200,),
    quick_sizes=(5,),
    repeats=1,  # 200 pods take a minute per client to start and as long to stop
    headline="cpu_ms_per_1000_changes",
    higher_is_better=False,
    chart_figures=("cpu_ms_per_1000_changes", "api_requests", "max_open_watches", "wall_s"),
    samples_open_watches=True,
)
