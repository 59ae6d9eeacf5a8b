"""User namespace: what `hostUsers: false` costs a sandbox, per create and per exec."""

from __future__ import annotations

import asyncio
import statistics
import time

import sandlot
from benchmarks.clients.base import Client
from benchmarks.cluster import BUSYBOX, NAMESPACE
from benchmarks.measure import Figures, Timed
from benchmarks.scenarios.base import Scenario

CREATES = 5


def user_namespace(client: Client, n: int) -> Figures:
    """sandlot sandboxes with a user namespace (its default where the nodes support one,
    as here) and without (`user_namespace=False`), side by side in one run: 5 of each
    created one after the other, alternating, timed from create to running (median);
    then n `true` execs into one of each, alternating (p50)."""

    async def run() -> Figures:
        async with sandlot.AsyncClient(NAMESPACE) as c:
            starts: dict[bool, list[float]] = {True: [], False: []}
            ready: dict[bool, sandlot.AsyncSandbox] = {}
            for _ in range(CREATES):
                for on in (True, False):
                    t = time.perf_counter()
                    sb = await c.sandboxes.create(BUSYBOX, user_namespace=on, network="unrestricted")
                    await sb.wait("running", timeout=600)
                    starts[on].append(time.perf_counter() - t)
                    if on in ready:
                        await sb.terminate()
                    else:
                        ready[on] = sb
            execs: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(n):
                for on in (True, False):
                    t = time.perf_counter()
                    await ready[on].exec(["true"])
                    execs[on].append(time.perf_counter() - t)
            await c.sandboxes.terminate_many(list(ready.values()))
            return {
                "create_userns_s": round(statistics.median(starts[True]), 3),
                "create_host_users_s": round(statistics.median(starts[False]), 3),
                "exec_userns_p50_ms": round(statistics.median(execs[True]) * 1000, 1),
                "exec_host_users_p50_ms": round(statistics.median(execs[False]) * 1000, 1),
            }

    with Timed() as timed:
        figures = asyncio.run(run())
    figures["create_ratio"] = round(figures["create_userns_s"] / figures["create_host_users_s"], 2)
    figures["exec_ratio"] = round(figures["exec_userns_p50_ms"] / figures["exec_host_users_p50_ms"], 2)
    return {**timed.figures(client), **figures}


SCENARIO = Scenario(
    name="user_namespace",
    measure=user_namespace,
    full_sizes=(100,),
    quick_sizes=(5,),
    repeats=1,
    headline="exec_ratio",
    higher_is_better=False,
    chart_figures=("create_userns_s", "create_host_users_s", "exec_userns_p50_ms", "exec_host_users_p50_ms"),
    clients=("sandlot",),  # a sandlot option: the other clients' pods have no user namespace
)
