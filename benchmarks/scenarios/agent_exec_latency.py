"""Agent exec latency: short execs one after the other into one sandbox, through the
sandbox agent against a Kubernetes exec per call."""

from __future__ import annotations

import statistics

from benchmarks.clients.base import Client
from benchmarks.clients.sandlot import SandlotClient
from benchmarks.cluster import kubectl
from benchmarks.measure import Figures, Timed
from benchmarks.scenarios.agent_common import agent_sandbox
from benchmarks.scenarios.base import Scenario


def agent_exec_latency(client: Client, n: int) -> Figures:
    """n sequential `true` execs into one running sandbox made by sandlot with its agent
    (as exec_latency, which execs into a plain pod, but every client's pod is such a
    sandbox): sandlot_agent runs them through the agent (exec_path="agent", every
    result checked to say path "agent"), sandlot_kubernetes_exec through a Kubernetes
    exec each (exec_path="kubernetes", sandlot before the agent), the other clients as
    in exec_latency. Every client makes all n calls. `first_ms` is the first call
    (for sandlot_agent: opening the agent's connection, one Kubernetes exec, included);
    the percentiles and `max_ms` cover all n. `server_p50_ms` is the API server's time per exec
    (shown for the Kubernetes-exec clients; sandlot_agent's one exec is its
    connection)."""
    name = agent_sandbox()
    with Timed() as timed:
        times = client.time_execs(name, ["true"], n)
    kubectl("delete", "pod", name, "--wait=false", "--grace-period=1")
    qs = statistics.quantiles(times, n=100)
    result: Figures = {
        **timed.figures(client),
        "p50_ms": round(qs[49] * 1000, 2),
        "p90_ms": round(qs[89] * 1000, 2),
        "p99_ms": round(qs[98] * 1000, 2),
        "max_ms": round(max(times) * 1000, 1),
        "first_ms": round(times[0] * 1000, 1),
    }
    if isinstance(client, SandlotClient):
        result["paths"] = ", ".join(f"{path} {count}/{n}" for path, count in sorted(client.paths.items()))
        result["_one_exec_session"] = client.exec_path == "agent"
    start = client.process_start_seconds()
    if start is not None:
        # The exec without the client's process start (kubectl's): less a run that only starts up.
        result["p50_without_start_ms"] = round((qs[49] - start) * 1000, 1)
    return result


SCENARIO = Scenario(
    name="agent_exec_latency",
    measure=agent_exec_latency,
    full_sizes=(300,),
    quick_sizes=(5,),
    repeats=1,
    headline="p50_ms",
    higher_is_better=False,
    chart_figures=("p50_ms", "p99_ms", "cpu_s", "api_requests"),
    clients=("sandlot_agent", "sandlot_kubernetes_exec", "kubernetes", "kubernetes_asyncio", "kubectl"),
    base_client="sandlot_agent",
    quick_by_default=False,  # tests/test_benchmarks.py pins the quick run's scenarios
    time_limit_s=600,
    reports_server_exec_time=True,
)
