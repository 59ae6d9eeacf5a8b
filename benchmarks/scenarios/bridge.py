"""Bridge: the cost of awaiting a call into the client's native runtime."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from benchmarks.clients.base import Client
from benchmarks.measure import Figures
from benchmarks.scenarios.base import Scenario

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def bridge(client: Client, n: int) -> Figures:
    """n awaits of sandlot calls that do no I/O, against plain asyncio: a call that can
    finish at once (a connected client's `connect`), a call that must cross to the Rust
    runtime's threads and back (`yield_once`), the same two calls through the blocking
    `sandlot.Client` (`sync_` rows), and, for scale, asyncio's own handoff from another
    thread (`call_soon_threadsafe`) and a coroutine that returns."""

    async def run() -> Figures:
        async def noop() -> None:
            return None

        def per_call(seconds: float) -> float:
            return round(seconds / n * 1e6, 2)

        loop = asyncio.get_running_loop()
        handoff: queue.SimpleQueue[asyncio.Future[None] | None] = queue.SimpleQueue()

        def resolver() -> None:
            while (future := handoff.get()) is not None:
                loop.call_soon_threadsafe(future.set_result, None)

        ready, crossing = await client.time_native_awaits(n)
        sync_ready, sync_crossing = client.time_native_blocking_calls(n)
        figures: Figures = {
            "ready_call_us": per_call(ready),
            "crossing_call_us": per_call(crossing),
            "sync_ready_call_us": per_call(sync_ready),
            "sync_crossing_call_us": per_call(sync_crossing),
        }
        thread = threading.Thread(target=resolver)
        thread.start()
        t = time.perf_counter()
        for _ in range(n):
            future = loop.create_future()
            handoff.put(future)
            await future
        figures["asyncio_thread_handoff_us"] = per_call(time.perf_counter() - t)
        handoff.put(None)
        thread.join()
        t = time.perf_counter()
        for _ in range(n):
            await noop()
        figures["asyncio_noop_us"] = per_call(time.perf_counter() - t)
        return figures

    return asyncio.run(run())


def draw_chart(ax: Axes, by_client: dict[str, dict[str, Any]]) -> None:
    """sandlot's figures (green) beside asyncio's (grey), on a log scale."""
    figures = list(SCENARIO.chart_figures)
    values = [by_client["sandlot"].get(f"_{f}", 0) for f in figures]
    ax.bar(range(len(figures)), values, color=["#2e8b57"] * 4 + ["#6e7781"] * 2)
    ax.set_xticks(range(len(figures)), [f.removesuffix("_us") for f in figures], rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_title("microseconds per await")


SCENARIO = Scenario(
    name="bridge",
    measure=bridge,
    full_sizes=(10_000,),
    quick_sizes=(100,),
    repeats=3,
    headline="ready_call_us",
    higher_is_better=False,
    chart_figures=(
        "ready_call_us",
        "crossing_call_us",
        "sync_ready_call_us",
        "sync_crossing_call_us",
        "asyncio_thread_handoff_us",
        "asyncio_noop_us",
    ),
    clients=("sandlot",),  # the only client with a native runtime to cross into
    draw_chart=draw_chart,
)
