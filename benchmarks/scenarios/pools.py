"""Warm pools: a create that takes a warm sandbox, against a cold create, in one run."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

import sandlot
from benchmarks.clients.base import Client
from benchmarks.cluster import BUSYBOX, NAMESPACE
from benchmarks.measure import Figures, Timed
from benchmarks.scenarios.base import Scenario

POOL_SIZE = 5
COLD_CREATES = 5
FILL_S = 600.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def full(client: sandlot.AsyncClient, pool: str, size: int) -> None:
    """Until `pool` has `size` warm sandboxes ready (left to the claims' own
    replacements: no fill is asked for)."""
    deadline = time.monotonic() + FILL_S
    while (await client.pools.get(pool)).ready < size:
        if time.monotonic() > deadline:
            raise TimeoutError(f"pool {pool} did not refill")
        await asyncio.sleep(0.1)


async def first_exec(client: sandlot.AsyncClient, i: int, **create: object) -> tuple[float, sandlot.AsyncSandbox]:
    """Seconds from create to a first exec completed (checked), and the sandbox."""
    t = time.perf_counter()
    sb = await client.sandboxes.create(env={"TASK": str(i)}, tags={"bench": "pool"}, **create)  # type: ignore[arg-type]
    if sb.status.phase != sandlot.Phase.RUNNING:
        await sb.wait("running", timeout=FILL_S)
    result = await sb.exec(["sh", "-c", "echo $TASK"])
    elapsed = time.perf_counter() - t
    assert result.stdout == f"{i}\n", result
    return elapsed, sb


def pool_create(client: Client, n: int) -> Figures:
    """n sequential creates from a pool of 5 (busybox, the default network), each with
    its own env and tags, timed from create to a first exec completed (`echo $TASK`,
    its output checked); between two, untimed, the terminate and a wait until the
    claims' own replacements have refilled the pool. Side by side in the same run:
    5 cold creates of the same sandbox (create, wait running, the same exec) and 5
    creates from the pool emptied (`resize(0)`), which fall back to cold. `fallbacks`
    counts pool creates that were served cold (0 expected); the ratio is cold p50 ÷
    warm p50."""

    async def run() -> Figures:
        async with sandlot.AsyncClient(NAMESPACE) as c:
            pool = f"bench-{uuid.uuid4().hex[:6]}"
            await c.pools.create(pool, BUSYBOX, size=POOL_SIZE, wait=FILL_S)
            try:
                warm: list[float] = []
                fallbacks = 0
                for i in range(n):
                    await full(c, pool, POOL_SIZE)
                    elapsed, sb = await first_exec(c, i, pool=pool)
                    warm.append(elapsed)
                    fallbacks += sb.status.pool_fallback is not None
                    await sb.terminate()
                cold: list[float] = []
                for i in range(COLD_CREATES):
                    elapsed, sb = await first_exec(c, i, image=BUSYBOX)
                    cold.append(elapsed)
                    await sb.terminate()
                await c.pools.resize(pool, 0)
                empty: list[float] = []
                for i in range(COLD_CREATES):
                    elapsed, sb = await first_exec(c, i, pool=pool)
                    assert sb.status.pool_fallback is not None
                    empty.append(elapsed)
                    await sb.terminate()
            finally:
                await c.pools.delete(pool)
            return {
                "warm_p50_ms": round(statistics.median(warm) * 1000, 1),
                "warm_p99_ms": round(percentile(warm, 0.99) * 1000, 1),
                "warm_max_ms": round(max(warm) * 1000, 1),
                "fallbacks": fallbacks,
                "cold_p50_ms": round(statistics.median(cold) * 1000, 1),
                "empty_pool_p50_ms": round(statistics.median(empty) * 1000, 1),
            }

    with Timed() as timed:
        figures = asyncio.run(run())
    figures["cold_vs_warm"] = round(figures["cold_p50_ms"] / figures["warm_p50_ms"], 1)
    return {**timed.figures(client), **figures}


def pool_concurrent(client: Client, n: int) -> Figures:
    """n creates at once (asyncio.gather, one client) against a full pool of n:
    `all_running_s` is the wall time until every create has returned a running
    sandbox; `warm` counts those taken warm and `distinct` the distinct sandboxes
    (n each expected: no warm pod claimed twice). Then each runs `cat /etc/hostname`,
    which must name its own pod."""

    async def run() -> Figures:
        async with sandlot.AsyncClient(NAMESPACE) as c:
            pool = f"bench-{uuid.uuid4().hex[:6]}"
            await c.pools.create(pool, BUSYBOX, size=n, wait=FILL_S)
            try:
                t = time.perf_counter()
                made = await asyncio.gather(*(c.sandboxes.create(pool=pool) for _ in range(n)))
                all_running = time.perf_counter() - t
                running = sum(sb.status.phase == sandlot.Phase.RUNNING for sb in made)
                warm = sum(sb.status.pool_fallback is None for sb in made)
                for sb in made:
                    if sb.status.phase != sandlot.Phase.RUNNING:
                        await sb.wait("running", timeout=FILL_S)
                names = await asyncio.gather(*(sb.exec(["cat", "/etc/hostname"]) for sb in made))
                own = sum(r.stdout.strip() == sb.name for r, sb in zip(names, made, strict=True))
                await c.sandboxes.terminate_many(made)
            finally:
                await c.pools.delete(pool)
            return {
                "all_running_s": round(all_running, 3),
                "running": f"{running}/{n}",
                "warm": f"{warm}/{n}",
                "distinct": f"{len({sb.name for sb in made})}/{n}",
                "own_pod": f"{own}/{n}",
            }

    with Timed() as timed:
        figures = asyncio.run(run())
    return {**timed.figures(client), **figures}


SCENARIO = Scenario(
    name="pool_create",
    measure=pool_create,
    full_sizes=(100,),
    quick_sizes=(3,),
    repeats=1,
    headline="warm_p50_ms",
    higher_is_better=False,
    chart_figures=("warm_p50_ms", "warm_p99_ms", "cold_p50_ms", "empty_pool_p50_ms"),
    clients=("sandlot",),  # a warm pool is sandlot's; the cold create beside it is the baseline
    quick_by_default=False,
)

CONCURRENT_SCENARIO = Scenario(
    name="pool_concurrent",
    measure=pool_concurrent,
    full_sizes=(20,),
    quick_sizes=(3,),
    repeats=1,
    headline="all_running_s",
    higher_is_better=False,
    chart_figures=("all_running_s",),
    clients=("sandlot",),
    quick_by_default=False,
)
