"""How native calls reach Python: an async call whose outcome is known comes
back finished (awaitable once), one that has to wait resolves from the
runtime, bad input raises on await, and cancelling a call stops its native
work. The sync classes block on the same futures, with Ctrl-C honoured."""

from __future__ import annotations

import asyncio
import time

import pytest

import sandlot
from conftest import Kubectl, unique
from sandlot import _testing


@pytest.fixture
async def client(sandlot_async_client: sandlot.AsyncClient) -> sandlot.AsyncClient:
    """The plugin's client, connected."""
    await sandlot_async_client.connect()
    return sandlot_async_client


async def test_a_finished_call_is_awaitable_once(client: sandlot.AsyncClient) -> None:
    call = client.__aenter__()  # connected already: nothing to wait for
    assert await call is client
    with pytest.raises(RuntimeError, match="twice"):
        await call


async def test_finished_calls_work_with_asyncio_helpers(client: sandlot.AsyncClient) -> None:
    first, second, crossed = await asyncio.gather(client.__aenter__(), client.__aenter__(), _testing.yield_once())
    assert (first, second, crossed) == (client, client, None)
    assert await asyncio.wait_for(client.__aenter__(), timeout=5) is client
    assert await asyncio.ensure_future(client.__aenter__()) is client


async def test_bad_input_raises_on_await_with_the_field_named_and_sends_nothing(
    client: sandlot.AsyncClient, sandlot_namespace: str
) -> None:
    pods_before = Kubectl(sandlot_namespace).run("get", "pods", "-o", "name").stdout
    call = client.sandboxes.create("docker.io/library/busybox:1.36", name="Not_A_Name")  # no raise here
    with pytest.raises(sandlot.errors.InvalidSpecError, match="name") as raised:
        await call
    assert raised.value.field == "name"
    # Helpers that build awaitables first and await them later see the error in place.
    outcomes = await asyncio.gather(
        client.sandboxes.create("docker.io/library/busybox:1.36", ttl_seconds=0),
        client.sandboxes.list(phase="nonsense"),
        return_exceptions=True,
    )
    assert [type(o) for o in outcomes] == [sandlot.InvalidSpecError, sandlot.InvalidSpecError]
    assert [o.field for o in outcomes if isinstance(o, sandlot.InvalidSpecError)] == ["ttl_seconds", "phase"]
    assert Kubectl(sandlot_namespace).run("get", "pods", "-o", "name").stdout == pods_before, "nothing was created"


async def test_a_cancelled_waiting_call_leaves_no_native_task(client: sandlot.AsyncClient) -> None:
    queued = await client.sandboxes.create("docker.io/library/busybox:1.36", resources={"cpu": "64"})
    try:
        waiting = asyncio.ensure_future(queued.wait("running", timeout=60))  # no node has 64 CPUs
        await asyncio.sleep(0.5)
        assert not waiting.done()
        during = _testing.runtime_task_count()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        for _ in range(50):
            if _testing.runtime_task_count() < during:
                break
            await asyncio.sleep(0.05)
        assert _testing.runtime_task_count() < during
    finally:
        await queued.terminate()


def test_a_call_outside_an_event_loop_starts_nothing(sandlot_namespace: str) -> None:
    Kubectl().run("create", "namespace", sandlot_namespace, check=False)
    name = unique("nowhere")
    with pytest.raises(RuntimeError, match="event loop"):
        sandlot.AsyncClient(sandlot_namespace).sandboxes.create("docker.io/library/busybox:1.36", name=name)
    time.sleep(1)  # room for a stray request to land
    assert Kubectl(sandlot_namespace).run("get", "pod", name, check=False).returncode != 0
