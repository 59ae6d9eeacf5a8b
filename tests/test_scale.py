"""What running thousands of sandboxes rests on, checked on the real node: a
client paces its own requests (qps and burst, as client-go), bulk operations
work from one paged list, and a record that vanished (purged elsewhere, or
removed by the cluster's pod garbage collector) is reported as gone by every
call. The figures at 1,000 to 10,000 sandboxes come from the scale benchmark
on fake nodes (`make cluster-scale`, benchmarks/scenarios/scale.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

import sandlot
from conftest import Kubectl
from test_cli import sandlot as run_sandlot

BUSYBOX = "docker.io/library/busybox:1.36"


@pytest.mark.unit
def test_a_rate_that_cannot_be_kept_is_refused_naming_it() -> None:
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(sandlot.InvalidSpecError) as raised:
            sandlot.AsyncClient("x", qps=bad)
        assert raised.value.field == "qps"
    for bad_burst in (0, -5):
        with pytest.raises(sandlot.InvalidSpecError) as raised:
            sandlot.Client("x", burst=bad_burst)
        assert raised.value.field == "burst"
    sandlot.AsyncClient("x", qps=None)  # no limit
    sandlot.AsyncClient("x", qps=0.5, burst=1)


async def test_a_client_paces_its_requests(sandlot_namespace: str) -> None:
    async with sandlot.AsyncClient(sandlot_namespace) as admin:
        sb = await admin.sandboxes.create(BUSYBOX)
    # 4 requests a second, 2 at once: 12 reads need at least (12 - 2) / 4 s
    # (the bucket may have refilled a little while connecting; 2 s is safe).
    async with sandlot.AsyncClient(sandlot_namespace, qps=4, burst=2) as client:
        await asyncio.sleep(1)  # the bucket is full again
        started = time.monotonic()
        await asyncio.gather(*(client.sandboxes.get(sb.name) for _ in range(12)))
        paced = time.monotonic() - started
    assert paced >= 2.0, f"12 reads at 4 per second took {paced:.2f} s"
    async with sandlot.AsyncClient(sandlot_namespace, qps=None) as unlimited:
        await asyncio.gather(*(unlimited.sandboxes.get(sb.name) for _ in range(12)))
        await (await unlimited.sandboxes.get(sb.name)).terminate()


async def test_bulk_operations_over_many_names_and_a_vanished_record(sandlot_namespace: str) -> None:
    async with sandlot.AsyncClient(sandlot_namespace) as client:
        # 60 names: more than a bulk terminate reads one by one, so it lists.
        jobs = await asyncio.gather(
            *(client.sandboxes.create(BUSYBOX, command=["sleep", "600"], tags={"bulk": "many"}) for _ in range(60))
        )
        names = [sb.name for sb in jobs]
        report = await client.sandboxes.terminate_many([*names, "never-made"])
        by_name = {r.name: r for r in report}
        assert all(by_name[n].terminated and by_name[n].error is None for n in names)
        assert not by_name["never-made"].terminated
        assert "not found" in (by_name["never-made"].error or "")
        await client.sandboxes.wait_all(names, "terminated", timeout=120)
        assert sorted(await client.sandboxes.purge(tags={"bulk": "many"})) == sorted(names)

        # A record removed behind sandlot's back (the pod garbage collector
        # removes terminated pods past its threshold) is gone to every call,
        # and a wait on it ends at once.
        sb = await client.sandboxes.create(BUSYBOX, command=["sleep", "600"])
        await sb.wait("running", timeout=120)
        waiting = asyncio.ensure_future(sb.wait("succeeded", timeout=60))
        await asyncio.sleep(0.5)
        Kubectl(sandlot_namespace).run("delete", "pod", sb.name, "--grace-period=0", "--force")
        started = time.monotonic()
        with pytest.raises(sandlot.NotFoundError):
            await waiting
        assert time.monotonic() - started < 30
        for call in (sb.refresh(), sb.logs(), sb.exec("true"), sb.terminate()):
            with pytest.raises(sandlot.NotFoundError):
                await call


def test_the_command_line_takes_a_rate(sandlot_namespace: str) -> None:
    listed = run_sandlot(sandlot_namespace, "--qps", "20", "--burst", "5", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert run_sandlot(sandlot_namespace, "--qps", "none", "list").returncode == 0
    for flags, named in ((["--qps", "0"], "--qps"), (["--qps", "fast"], "--qps"), (["--burst", "0"], "--burst")):
        bad = run_sandlot(sandlot_namespace, *flags, "list")
        assert bad.returncode == 2 and named in bad.stderr, bad.stderr
