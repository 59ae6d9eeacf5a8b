"""Fan-out: many independent jobs, each a pod with one exec, at once."""

from __future__ import annotations

import uuid

from benchmarks.clients import NAMES
from benchmarks.clients.base import Client
from benchmarks.measure import Figures, Timed
from benchmarks.scenarios.base import Scenario


def fanout(client: Client, n: int) -> Figures:
    """Create n pods, wait until all run, one echo exec in each, terminate all. Every
    Python client runs one task per pod (create, wait, exec, delete) concurrently,
    as a fan-out of independent jobs is written; kubectl does each step for all pods.
    sandlot's sandboxes get its default network (a NetworkPolicy each, and a gate that
    starts the command once the policy holds) and a user namespace where the nodes
    support one (here they do); sandlot_unrestricted's get no policy or gate, like
    the other clients' pods; sandlot_host_users's the default network but no user
    namespace, like the other clients' pods."""
    batch = uuid.uuid4().hex[:6]
    names = [f"fan-{batch}-{i}" for i in range(n)]
    commands = {name: ["echo", name] for name in names}
    with Timed() as timed:
        outputs = client.fan_out(commands)
    correct = sum(out == f"{name}\n".encode() for name, out in zip(names, outputs, strict=False))
    return {**timed.figures(client), "correct": f"{correct}/{n}"}


SCENARIO = Scenario(
    name="fanout",
    measure=fanout,
    full_sizes=(10, 50),
    quick_sizes=(3,),
    repeats=2,  # pods take long to start and to stop: 2 keep a full run within 15 minutes
    headline="wall_s",
    higher_is_better=False,
    chart_figures=("wall_s", "cpu_s", "peak_rss_mib", "api_requests"),
    clients=(*NAMES, "sandlot_unrestricted", "sandlot_host_users"),
)
