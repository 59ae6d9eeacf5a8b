"""Log follow: a fast writer's log, followed to its end."""

from __future__ import annotations

import json
import time
import uuid

from benchmarks.clients.base import Client
from benchmarks.cluster import kubectl, pod_manifest
from benchmarks.measure import Figures, Timed
from benchmarks.scenarios.base import Scenario


def log_follow(client: Client, lines: int) -> Figures:
    """A pod printing `lines` lines as fast as it can, followed to its end; the rate is
    lines delivered to Python between the first line and the last."""
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
    with Timed() as timed:
        client.follow_logs(name, got)
    kubectl("delete", "pod", name, "--wait=false", "--grace-period=1")
    complete = received == [str(i) for i in range(1, lines + 1)]
    span = arrivals[1] - arrivals[0]
    return {
        **timed.figures(client),
        "lines_per_s": round(len(received) / span) if span > 0 else None,
        "complete": complete,
    }


SCENARIO = Scenario(
    name="log_follow",
    measure=log_follow,
    full_sizes=(200_000,),
    quick_sizes=(100,),
    repeats=2,  # 2 keep a full run within 15 minutes
    headline="lines_per_s",
    higher_is_better=True,
    chart_figures=("lines_per_s", "cpu_s", "peak_rss_mib"),
)
