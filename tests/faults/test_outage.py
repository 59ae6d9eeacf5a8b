"""The API server unreachable for a minute (packets to its node address
dropped, so open connections hang rather than close): waits and a follow
resume afterwards, and no wait longer than the outage times out falsely."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Row, Scale
from .harness import (
    BUSYBOX,
    api_server_unreachable,
    client_through,
    node_address_kubeconfig,
    percentile,
)
from .test_api_server_restart import WaitOutcome, sandboxes_ending_when_the_api_server_goes, wait_through

WAITERS = 20
FOLLOW_LINES = 2000


@pytest.mark.full_only
async def test_waits_and_a_follow_resume_after_an_outage(
    sandlot_namespace: str, scale: Scale, record: Callable[[Row], None], tmp_path: Path
) -> None:
    kubeconfig = node_address_kubeconfig(tmp_path / "node.kubeconfig")
    async with client_through(kubeconfig, sandlot_namespace) as client:
        sandboxes, expected = await sandboxes_ending_when_the_api_server_goes(client, WAITERS, "outage")
        # A line every 0.05 s for longer than the outage: the follow spans it.
        seconds = scale.outage_seconds + 40
        writer = await client.sandboxes.create(
            BUSYBOX,
            command=["sh", "-c", f"for i in $(seq 1 {FOLLOW_LINES}); do echo $i; sleep {seconds / FOLLOW_LINES}; done"],
        )
        await writer.wait("running", timeout=120)
        lines: list[str] = []

        async def follow() -> BaseException | None:
            try:
                async for line in writer.stream_logs(follow=True):
                    lines.append(line)
            except Exception as err:
                return err
            return None

        follower = asyncio.ensure_future(follow())

        def outage() -> float:
            with api_server_unreachable():
                time.sleep(scale.outage_seconds)
            return time.monotonic()

        started = time.monotonic()
        results, back_at = await wait_through(sandboxes, outage)
        outcome = WaitOutcome(expected, results, back_at)
        false_timeouts = sum(1 for _, r, t in results if isinstance(r, TimeoutError) and t - started < 300)
        try:
            error = await asyncio.wait_for(follower, seconds + 300)
        except TimeoutError as err:
            error = err
        counts = Counter(lines)
        lost = sum(1 for i in range(1, FOLLOW_LINES + 1) if str(i) not in counts)
        duplicated = sum(n - 1 for n in counts.values() if n > 1)
        record(
            Row(
                "API server unreachable (firewall) during waits and a follow",
                f"{WAITERS} waits (timeout 300 s) and 1 follow of {FOLLOW_LINES} lines, "
                f"{scale.outage_seconds} s of dropped packets",
                outcome.summary(WAITERS)
                + f"; false timeouts {false_timeouts} (want 0); follow lines lost {lost}, duplicated {duplicated} "
                "(want 0)" + (f"; the follow failed: {type(error).__name__}: {error}" if error else ""),
                f"waits returned p50 {percentile(outcome.delays, 50):.1f} s, p99 {percentile(outcome.delays, 99):.1f} s "
                "after the rule was removed",
                not outcome.missed and not outcome.errors and lost == 0 and duplicated == 0 and error is None,
            )
        )
        assert outcome.missed == []
        assert outcome.errors == []
        assert error is None
        assert (lost, duplicated) == (0, 0)
