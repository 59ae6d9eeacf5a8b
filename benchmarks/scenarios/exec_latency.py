"""Exec latency: short execs one after the other into one pod."""

from __future__ import annotations

import statistics

from benchmarks.clients.base import Client
from benchmarks.cluster import kubectl, running_pod
from benchmarks.measure import Figures, Timed
from benchmarks.scenarios.base import Scenario


def exec_latency(client: Client, n: int) -> Figures:
    """n sequential `true` execs into one running pod. The server's own time per exec
    (API server audit: request received to response complete) is the floor no client
    can go under."""
    name = running_pod()
    with Timed() as timed:
        times = client.time_execs(name, ["true"], n)
    kubectl("delete", "pod", name, "--wait=false", "--grace-period=1")
    qs = statistics.quantiles(times, n=100)
    result = {
        **timed.figures(client),
        "p50_ms": round(qs[49] * 1000, 1),
        "p90_ms": round(qs[89] * 1000, 1),
        "p99_ms": round(qs[98] * 1000, 1),
    }
    start = client.process_start_seconds()
    if start is not None:
        # The exec without the client's process start (kubectl's): less a run that only starts up.
        result["p50_without_start_ms"] = round((qs[49] - start) * 1000, 1)
    return result


SCENARIO = Scenario(
    name="exec_latency",
    measure=exec_latency,
    full_sizes=(300,),
    quick_sizes=(5,),
    repeats=1,
    headline="p50_ms",
    higher_is_better=False,
    chart_figures=("p50_ms", "p90_ms", "p99_ms", "cpu_s"),
    reports_server_exec_time=True,
)
