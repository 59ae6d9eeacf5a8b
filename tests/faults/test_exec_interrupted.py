"""Execs that time out or are cancelled leave nothing running in the sandbox."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

import sandlot

from .conftest import Row, Scale
from .harness import BUSYBOX, wait_for_processes

# How long the processes of an interrupted exec may take to go: a bound for a
# hang, not a speed requirement.
CLEANUP_SECONDS = 20
BATCH = 10


@pytest.fixture(scope="module")
async def box(sandlot_async_client: sandlot.AsyncClient) -> AsyncIterator[sandlot.AsyncSandbox]:
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX)
    await sb.wait("running", timeout=120)
    yield sb
    await sb.terminate()


async def test_exec_timeouts_leave_no_process(
    box: sandlot.AsyncSandbox, sandlot_namespace: str, scale: Scale, record: Callable[[Row], None]
) -> None:
    outcomes: Counter[str] = Counter()

    async def one() -> None:
        try:
            await box.exec(["sleep", "301"], timeout=1)
            outcomes["returned"] += 1
        except sandlot.TimeoutError:
            outcomes["TimeoutError"] += 1
        except Exception as err:
            outcomes[type(err).__name__] += 1

    for start in range(0, scale.exec_timeouts, BATCH):
        await asyncio.gather(*(one() for _ in range(min(BATCH, scale.exec_timeouts - start))))
    returned_at = time.monotonic()
    left = await asyncio.to_thread(wait_for_processes, sandlot_namespace, box.name, "sleep 301", 0, CLEANUP_SECONDS)
    gone_after = time.monotonic() - returned_at
    record(
        Row(
            "exec timeouts",
            f"{scale.exec_timeouts} execs of `sleep 301` with timeout=1 s, {BATCH} at a time",
            f"processes left {left} (want 0); outcomes " + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())),
            f"all gone {gone_after:.1f} s after the last timeout"
            if left == 0
            else f"still running {CLEANUP_SECONDS} s after the last timeout",
            left == 0 and outcomes["TimeoutError"] == scale.exec_timeouts,
        )
    )
    assert outcomes == {"TimeoutError": scale.exec_timeouts}
    assert left == 0


async def test_exec_cancellations_leave_no_process(
    box: sandlot.AsyncSandbox, sandlot_namespace: str, scale: Scale, record: Callable[[Row], None]
) -> None:
    started = 0
    for start in range(0, scale.exec_cancellations, BATCH):
        count = min(BATCH, scale.exec_cancellations - start)
        tasks = [asyncio.ensure_future(box.exec(["sleep", "302"], timeout=600)) for _ in range(count)]
        # Cancelled once the commands run (or after a bound, cancelled anyway).
        running = await asyncio.to_thread(
            wait_for_processes, sandlot_namespace, box.name, "sleep 302", started + count, 30
        )
        started = running
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    cancelled_at = time.monotonic()
    left = await asyncio.to_thread(wait_for_processes, sandlot_namespace, box.name, "sleep 302", 0, CLEANUP_SECONDS)
    gone_after = time.monotonic() - cancelled_at
    record(
        Row(
            "exec cancellations",
            f"{scale.exec_cancellations} execs of `sleep 302` cancelled while running, {BATCH} at a time",
            f"processes left {left} of {running} running at the last cancel (want 0)",
            f"all gone {gone_after:.1f} s after the last cancel"
            if left == 0
            else f"still running {CLEANUP_SECONDS} s after the last cancel",
            left == 0,
        )
    )
    assert left == 0
