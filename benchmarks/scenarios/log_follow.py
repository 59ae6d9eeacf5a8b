"""Log follow: a fast writer's log, followed to its end."""

from __future__ import annotations

import json
import time
import uuid

from benchmarks.clients.base import Client
from benchmarks.cluster import kubectl, pod_manifest
from benchmarks.measure import Figures, Timed, cluster_cpu_seconds
from benchmarks.scenarios.base import Scenario


def log_follow(client: Client, lines: int) -> Figures:
    """A pod printing `lines` lines as fast as it can, followed to its end; the rate is
    lines delivered to Python between the first line and the last. `cluster_cpu_s` is
    what the local cluster's processes (API server, kubelet, containerd) spent meanwhile:
    the kubelet serves a log a line at a time, and with the client they share the node's
    two cores, so the rate is mostly theirs to set."""
    name = f"logs-{uuid.uuid4().hex[:6]}"
    command = ["sh", "-c", f"sleep 2; seq 1 {lines}"]
    received: list[str] = []
    arrivals = [0.0, 0.0]  # when the first and the latest line arrived

    def got(line: str) -> None:
        now = time.perf_counter()
        if not received:
            arrivals[0] = now
        received.append(line)
        arrivals[1] = now

    kubectl("apply", "-f", "-", stdin=json.dumps(pod_manifest(name, command=command)))
    kubectl("wait", "--for=jsonpath={.status.phase}=Running", "--timeout=120s", f"pod/{name}")
    cluster_cpu = cluster_cpu_seconds()
    with Timed() as timed:
        client.follow_logs(name, got)
    cluster_cpu = cluster_cpu_seconds() - cluster_cpu
    kubectl("delete", "pod", name, "--wait=false", "--grace-period=1")
    complete = received == [str(i) for i in range(1, lines + 1)]
    span = arrivals[1] - arrivals[0]
    return {
        **timed.figures(client),
        "lines_per_s": round(len(received) / span) if span > 0 else None,
        "complete": complete,
        "cluster_cpu_s": round(cluster_cpu, 2),
    }


SCENARIO = Scenario(
    name="log_follow",
    measure=log_follow,
    full_sizes=(200_000,),
    quick_sizes=(100,),
    # The rate swings by a third from one run to the next on this shared machine:
    # medians of 5, in rotated order, about 4 minutes in all.
    repeats=5,
    headline="lines_per_s",
    higher_is_better=True,
    chart_figures=("lines_per_s", "cpu_s", "peak_rss_mib"),
)
