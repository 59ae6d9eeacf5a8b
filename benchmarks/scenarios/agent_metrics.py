"""Agent metrics: one reading of a sandbox's resources through its agent, against
what users would otherwise run, and its disk count against the kubelet's."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import TYPE_CHECKING, Any

import sandlot
from benchmarks.clients.base import Client
from benchmarks.cluster import BUSYBOX, NAMESPACE, kubectl
from benchmarks.measure import Figures, Timed
from benchmarks.scenarios.base import Scenario

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MIB = 1024 * 1024
ROUNDS = 10
# The kubelet refreshes its disk figures every ~10 s; a bound for seeing the new ones.
KUBELET_SETTLE_S = 60


def kubelet_summary() -> dict[str, Any]:
    """The node's kubelet stats summary, as `kubectl top` and eviction read it
    (through the API server's node proxy: admin credentials)."""
    node = kubectl("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}").stdout.decode()
    summary: dict[str, Any] = json.loads(kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/stats/summary").stdout)
    return summary


def kubelet_disk(pod: str) -> tuple[int | None, int | None]:
    """The kubelet's ephemeral-storage use of `pod` (writable layer, emptyDirs and
    logs) and its container's writable layer (rootfs), in bytes."""
    for entry in kubelet_summary().get("pods", []):
        if entry["podRef"]["name"] == pod and entry["podRef"]["namespace"] == NAMESPACE:
            ephemeral = entry.get("ephemeral-storage", {}).get("usedBytes")
            rootfs = sum(c.get("rootfs", {}).get("usedBytes", 0) for c in entry.get("containers", []))
            return ephemeral, rootfs
    return None, None


def agent_metrics(client: Client, mib: int) -> Figures:
    """One sandbox with the agent (busybox, a read-only root with its /tmp an
    emptyDir), `mib` MiB of random bytes written to /tmp. Then 10 rounds, in
    turn: `sb.metrics(interval=0.25)` (CPU over two readings 0.25 s apart, memory,
    processes, network, and the agent's disk count); the kubelet's stats summary
    for the node (`kubectl get --raw .../proxy/stats/summary`, what `kubectl top`
    and eviction read, needing admin credentials); and `du -sx /tmp` by
    `kubectl exec`. Medians of wall seconds. The disk figures: sandlot's
    `disk_used_bytes` and the kubelet's ephemeral-storage use for the pod
    (writable layer, emptyDirs and the container's log), once the kubelet has
    counted the write."""

    async def run() -> Figures:
        async with sandlot.AsyncClient(NAMESPACE, exec_path="agent") as sl:
            sb = await sl.sandboxes.create(BUSYBOX, network="unrestricted", read_only_root_filesystem=True)
            try:
                await sb.wait("running", timeout=300)
                before = (await sb.metrics()).disk_used_bytes
                await sb.exec(["sh", "-c", f"head -c {mib * MIB} /dev/urandom > /tmp/blob"], check=True)
                times: dict[str, list[float]] = {"sandlot": [], "kubelet_summary": [], "kubectl_exec_du": []}
                reading = await sb.metrics()
                for _ in range(ROUNDS):
                    started = time.perf_counter()
                    reading = await sb.metrics()
                    times["sandlot"].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    await asyncio.to_thread(kubelet_summary)
                    times["kubelet_summary"].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    await asyncio.to_thread(kubectl, "exec", sb.name, "--", "du", "-sx", "/tmp")
                    times["kubectl_exec_du"].append(time.perf_counter() - started)
                deadline = time.monotonic() + KUBELET_SETTLE_S
                ephemeral, rootfs = await asyncio.to_thread(kubelet_disk, sb.name)
                while (ephemeral or 0) < mib * MIB and time.monotonic() < deadline:
                    await asyncio.sleep(2)
                    ephemeral, rootfs = await asyncio.to_thread(kubelet_disk, sb.name)
                reading = await sb.metrics()
            finally:
                await sb.terminate()
        figures: Figures = {f"{name}_s": round(statistics.median(values), 3) for name, values in times.items()}
        used = reading.disk_used_bytes
        figures["sandlot_disk_used_mib"] = round(used / MIB, 2) if used is not None else None
        figures["sandlot_disk_before_mib"] = round(before / MIB, 2) if before is not None else None
        figures["kubelet_ephemeral_used_mib"] = round(ephemeral / MIB, 2) if ephemeral is not None else None
        figures["kubelet_rootfs_used_mib"] = round(rootfs / MIB, 2) if rootfs is not None else None
        return figures

    with Timed() as timed:
        figures = asyncio.run(run())
    return {**timed.figures(client), **figures}


WAYS = (
    ("sandlot metrics()", "sandlot_s"),
    ("kubelet stats summary", "kubelet_summary_s"),
    ("kubectl exec du", "kubectl_exec_du_s"),
)


def draw(ax: Axes, by_client: dict[str, dict[str, Any]]) -> None:
    """Seconds per reading, each way side by side."""
    row = by_client["sandlot"]
    ax.bar(range(len(WAYS)), [row.get(f"_{key}") or 0 for _, key in WAYS], color=["#2e8b57", "#6e7781", "#6e7781"])
    ax.set_xticks(range(len(WAYS)), [label for label, _ in WAYS], fontsize=8)
    ax.set_title("seconds per reading", fontsize=10)


SCENARIO = Scenario(
    name="agent_metrics",
    measure=agent_metrics,
    full_sizes=(64,),
    quick_sizes=(1,),
    repeats=1,
    headline="sandlot_s",
    higher_is_better=False,
    chart_figures=(),
    clients=("sandlot",),  # sandlot against kubectl, run from this one worker
    quick_by_default=False,  # tests/test_benchmarks.py pins the quick run's scenarios
    time_limit_s=300,
    draw_chart=draw,
)
