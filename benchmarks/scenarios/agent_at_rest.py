"""Agent at rest: what the sandbox agent costs a sandbox that is not running a
command (its memory), and what it adds from create to the first exec."""

from __future__ import annotations

import asyncio
import statistics
import time

import sandlot
from benchmarks.clients.base import Client
from benchmarks.cluster import BUSYBOX, NAMESPACE
from benchmarks.measure import Figures, Timed
from benchmarks.scenarios.agent_common import PATHS, ExecPath, checked, in_turn, paired_chart, ratio
from benchmarks.scenarios.base import Scenario

# Lists the sandbox's agent processes: "pid VmRSS-in-KiB cmdline", one a line. The
# pattern is put together at run time, so this script's own command line never matches.
AGENT_PROCESSES = r"""
d=.sandlot-agent; pattern="$d/agent"
for p in /proc/[0-9]*; do
  if grep -qF "$pattern" "$p/cmdline" 2>/dev/null; then
    rss=$(awk '/^VmRSS:/ { print $2 }' "$p/status" 2>/dev/null)
    echo "${p#/proc/} ${rss:-0} $(tr '\000' ' ' < "$p/cmdline")"
  fi
done
"""


def agent_at_rest(client: Client, n: int) -> Figures:
    """n sandboxes made by a client with exec_path="agent" (each with the agent) and n
    by one with exec_path="kubernetes" (without it, as sandlot made them before the
    agent), both clients in this process and connected beforehand, one after the other,
    alternating: each timed from create through running (default network: its
    NetworkPolicy and gate) to the end of its first `true` exec (medians; `ratio` is
    agent ÷ Kubernetes path). Then, in the last sandbox with the agent, with its
    connection still open after that one exec and no command running through it, the
    resident memory (VmRSS) of every process whose command line holds
    `.sandlot-agent/agent` (the daemon and the connection's relay), read from /proc
    by a Kubernetes exec of a busybox sh/awk script."""

    async def run() -> Figures:
        total: dict[ExecPath, list[float]] = {path: [] for path in PATHS}
        running: dict[ExecPath, list[float]] = {path: [] for path in PATHS}
        first_exec: dict[ExecPath, list[float]] = {path: [] for path in PATHS}
        async with (
            sandlot.AsyncClient(NAMESPACE, exec_path="agent") as agent,
            sandlot.AsyncClient(NAMESPACE, exec_path="kubernetes") as kube,
        ):
            clients = {"agent": agent, "kubernetes": kube}
            kept: sandlot.AsyncSandbox | None = None
            for round_ in range(n):
                for path in in_turn(round_):
                    started = time.perf_counter()
                    sb = await clients[path].sandboxes.create(BUSYBOX)
                    await sb.wait("running", timeout=600)
                    ran = time.perf_counter()
                    checked(await sb.exec(["true"], check=True), path)
                    done = time.perf_counter()
                    total[path].append(done - started)
                    running[path].append(ran - started)
                    first_exec[path].append(done - ran)
                    # The newest with the agent is kept for its memory; the one before goes.
                    done_with = kept if path == "agent" else sb
                    if path == "agent":
                        kept = sb
                    if done_with is not None:
                        await done_with.terminate()
            assert kept is not None
            try:
                # Read through a Kubernetes exec: no command runs through the agent meanwhile.
                seen = await kube.sandboxes.get(kept.name)
                listing = checked(await seen.exec(["sh", "-c", AGENT_PROCESSES], check=True), "kubernetes").stdout
            finally:
                await kept.terminate()
        processes = [line.split(maxsplit=2) for line in listing.splitlines() if line.strip()]
        figures: Figures = {}
        for path in PATHS:
            figures[f"{path}_create_first_exec_s"] = round(statistics.median(total[path]), 3)
        figures["create_first_exec_ratio"] = ratio(
            figures["agent_create_first_exec_s"], figures["kubernetes_create_first_exec_s"]
        )
        for path in PATHS:
            figures[f"{path}_running_s"] = round(statistics.median(running[path]), 3)
            figures[f"{path}_first_exec_ms"] = round(statistics.median(first_exec[path]) * 1000, 1)
        figures["agent_processes"] = len(processes)
        figures["agent_rss_kib"] = sum(int(p[1]) for p in processes)
        figures["agent_rss_each_kib"] = " + ".join(f"{p[1]} ({p[2].strip()})" for p in processes)
        return figures

    with Timed() as timed:
        figures = asyncio.run(run())
    return {**timed.figures(client), **figures}


SCENARIO = Scenario(
    name="agent_at_rest",
    measure=agent_at_rest,
    full_sizes=(5,),
    quick_sizes=(1,),
    repeats=1,
    headline="create_first_exec_ratio",
    higher_is_better=False,
    chart_figures=(),
    clients=("sandlot",),  # both exec paths of sandlot, in one process
    quick_by_default=False,  # tests/test_benchmarks.py pins the quick run's scenarios
    time_limit_s=600,
    draw_chart=paired_chart(
        "seconds from create",
        (
            ("to running", "agent_running_s", "kubernetes_running_s"),
            ("to first exec's end", "agent_create_first_exec_s", "kubernetes_create_first_exec_s"),
        ),
    ),
)
