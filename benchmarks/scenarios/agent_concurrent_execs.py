"""Agent concurrent execs: many execs into one sandbox at once, through the sandbox
agent against a Kubernetes exec each."""

from __future__ import annotations

import asyncio
import statistics
import time

import sandlot
from benchmarks.clients.base import Client
from benchmarks.measure import Figures, Timed
from benchmarks.scenarios.agent_common import (
    PATHS,
    ROUNDS,
    ExecPath,
    in_turn,
    one_sandbox_both_paths,
    paired_chart,
    ratio,
)
from benchmarks.scenarios.base import Scenario

COMMAND = ["sh", "-c", "echo $$"]


def agent_concurrent_execs(client: Client, n: int) -> Figures:
    """n execs of `sh -c 'echo $$'` at once (asyncio.gather) into one sandbox with the
    agent, through the agent (exec_path="agent") and through a Kubernetes exec each
    (exec_path="kubernetes", sandlot before the agent), both into the same sandbox,
    from two clients in this process, each past one exec already: 3 rounds of each,
    alternating. The wall time of a round and this process's CPU time for it (every
    thread: time.process_time), medians; `ratio`s are agent ÷ Kubernetes path.
    `*_ok`: calls that exited 0 printing a pid, of all rounds' calls."""

    async def run() -> Figures:
        wall: dict[ExecPath, list[float]] = {path: [] for path in PATHS}
        cpu: dict[ExecPath, list[float]] = {path: [] for path in PATHS}
        ok: dict[ExecPath, int] = dict.fromkeys(PATHS, 0)
        errors: dict[ExecPath, list[str]] = {path: [] for path in PATHS}
        async with one_sandbox_both_paths() as sandboxes:
            for round_ in range(ROUNDS):
                for path in in_turn(round_):
                    sb = sandboxes[path]
                    cpu_before, started = time.process_time(), time.perf_counter()
                    results = await asyncio.gather(*(sb.exec(COMMAND) for _ in range(n)), return_exceptions=True)
                    wall[path].append(time.perf_counter() - started)
                    cpu[path].append(time.process_time() - cpu_before)
                    for result in results:
                        if isinstance(result, sandlot.ExecResult):
                            if result.path != path:
                                raise RuntimeError(f"an exec of the {path} client took the {result.path} path")
                            ok[path] += result.exit_code == 0 and result.stdout.strip().isdigit()
                        else:
                            errors[path].append(f"{type(result).__name__}: {result}")
        figures: Figures = {}
        for path in PATHS:
            figures[f"{path}_wall_s"] = round(statistics.median(wall[path]), 3)
            figures[f"{path}_cpu_s"] = round(statistics.median(cpu[path]), 3)
        figures["wall_ratio"] = ratio(figures["agent_wall_s"], figures["kubernetes_wall_s"])
        figures["cpu_ratio"] = ratio(figures["agent_cpu_s"], figures["kubernetes_cpu_s"])
        for path in PATHS:
            figures[f"{path}_ok"] = f"{ok[path]}/{ROUNDS * n}"
            if errors[path]:
                figures[f"{path}_first_error"] = errors[path][0][:200]
        return figures

    with Timed() as timed:
        figures = asyncio.run(run())
    return {**timed.figures(client), **figures}


SCENARIO = Scenario(
    name="agent_concurrent_execs",
    measure=agent_concurrent_execs,
    full_sizes=(100,),
    quick_sizes=(5,),
    repeats=1,
    headline="wall_ratio",
    higher_is_better=False,
    chart_figures=(),
    clients=("sandlot",),  # both exec paths of sandlot, into one sandbox, in one process
    quick_by_default=False,  # tests/test_benchmarks.py pins the quick run's scenarios
    time_limit_s=600,
    draw_chart=paired_chart(
        "seconds per round of concurrent execs",
        (("wall", "agent_wall_s", "kubernetes_wall_s"), ("CPU", "agent_cpu_s", "kubernetes_cpu_s")),
    ),
)
