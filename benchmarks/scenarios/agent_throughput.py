"""Agent throughput: one exec's large stdout through the sandbox agent against a
Kubernetes exec."""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import time

from benchmarks.clients.base import Client
from benchmarks.measure import Figures, Timed
from benchmarks.scenarios.agent_common import (
    PATHS,
    ROUNDS,
    ExecPath,
    checked,
    in_turn,
    one_sandbox_both_paths,
    paired_chart,
    ratio,
)
from benchmarks.scenarios.base import Scenario

MIB = 1024 * 1024


def agent_throughput(client: Client, mib: int) -> Figures:
    """`cat` of a file of `mib` MiB of random bytes, made in one sandbox with the agent
    beforehand, its stdout kept whole (max_output=None) and checked by sha256 against
    `sha256sum` in the sandbox: through the agent (exec_path="agent") and through a
    Kubernetes exec (exec_path="kubernetes", sandlot before the agent), into the same
    sandbox from two clients in this process: 3 rounds of each, alternating. MiB/s
    and this process's CPU time per call (every thread), medians; the `ratio` is
    agent ÷ Kubernetes path."""

    async def run() -> Figures:
        rates: dict[ExecPath, list[float]] = {path: [] for path in PATHS}
        cpu: dict[ExecPath, list[float]] = {path: [] for path in PATHS}
        intact: dict[ExecPath, int] = dict.fromkeys(PATHS, 0)
        async with one_sandbox_both_paths() as sandboxes:
            agent = sandboxes["agent"]
            await agent.exec(["sh", "-c", f"head -c {mib * MIB} /dev/urandom > /tmp/blob"], check=True)
            expected = (await agent.exec(["sha256sum", "/tmp/blob"], check=True)).stdout.split()[0]
            for round_ in range(ROUNDS):
                for path in in_turn(round_):
                    cpu_before, started = time.process_time(), time.perf_counter()
                    result = await sandboxes[path].exec(["cat", "/tmp/blob"], max_output=None)
                    wall = time.perf_counter() - started
                    cpu[path].append(time.process_time() - cpu_before)
                    data = checked(result, path).stdout_bytes
                    if result.exit_code == 0 and hashlib.sha256(data).hexdigest() == expected:
                        intact[path] += 1
                        rates[path].append(len(data) / MIB / wall)  # a call that lost data is not timed
                    del result, data
        figures: Figures = {}
        for path in PATHS:
            figures[f"{path}_mib_per_s"] = round(statistics.median(rates[path]), 1) if rates[path] else None
            figures[f"{path}_cpu_s"] = round(statistics.median(cpu[path]), 3)
        agent_rate, kube_rate = figures["agent_mib_per_s"], figures["kubernetes_mib_per_s"]
        figures["mib_per_s_ratio"] = ratio(agent_rate, kube_rate) if agent_rate and kube_rate else None
        figures["cpu_ratio"] = ratio(figures["agent_cpu_s"], figures["kubernetes_cpu_s"])
        for path in PATHS:
            figures[f"{path}_intact"] = f"{intact[path]}/{ROUNDS}"
        return figures

    with Timed() as timed:
        figures = asyncio.run(run())
    return {**timed.figures(client), **figures}


SCENARIO = Scenario(
    name="agent_throughput",
    measure=agent_throughput,
    full_sizes=(100,),
    quick_sizes=(1,),
    repeats=1,
    headline="mib_per_s_ratio",
    higher_is_better=True,
    chart_figures=(),
    clients=("sandlot",),  # both exec paths of sandlot, into one sandbox, in one process
    quick_by_default=False,  # tests/test_benchmarks.py pins the quick run's scenarios
    time_limit_s=300,
    draw_chart=paired_chart("MiB/s of one exec's stdout", (("MiB/s", "agent_mib_per_s", "kubernetes_mib_per_s"),)),
)
