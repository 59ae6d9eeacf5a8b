"""How native calls reach asyncio: a call that finishes without waiting comes
back finished (awaitable once), a call that has to wait resolves from the
runtime, and cancelling it stops the native work."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

import sandlot
from conftest import Kubectl, unique
from sandlot import _native


@pytest.fixture(scope="module")
def namespace(kubeconfig: str) -> Iterator[str]:
    name = unique("sandlot-bridge")
    yield name
    Kubectl().run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
async def client(namespace: str) -> AsyncIterator[sandlot.AsyncClient]:
    async with sandlot.AsyncClient(namespace) as client:
        yield client


async def test_a_finished_call_is_awaitable_once(client: sandlot.AsyncClient) -> None:
    call = client.__aenter__()  # connected already: nothing to wait for
    assert await call is client
    with pytest.raises(RuntimeError, match="twice"):
        await call


async def test_finished_calls_work_with_asyncio_helpers(client: sandlot.AsyncClient) -> None:
    first, second, crossed = await asyncio.gather(client.__aenter__(), client.__aenter__(), _native.yield_once())
    assert (first, second, crossed) == (client, client, None)
    assert await asyncio.wait_for(client.__aenter__(), timeout=5) is client
    assert await asyncio.ensure_future(client.__aenter__()) is client


async def test_bad_input_fails_with_the_field_named_before_any_request(client: sandlot.AsyncClient) -> None:
    with pytest.raises(sandlot.errors.InvalidSpecError, match="name"):
        await client.sandboxes.create("docker.io/library/busybox:1.36", name="Not A Name")


async def test_a_cancelled_waiting_call_leaves_no_native_task(client: sandlot.AsyncClient) -> None:
    queued = await client.sandboxes.create("docker.io/library/busybox:1.36", resources={"cpu": "64"})
    try:
        waiting = asyncio.ensure_future(queued.wait("running", timeout=60))  # no node has 64 CPUs
        await asyncio.sleep(0.5)
        assert not waiting.done()
        during = _native.runtime_task_count()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        for _ in range(50):
            if _native.runtime_task_count() < during:
                break
            await asyncio.sleep(0.05)
        assert _native.runtime_task_count() < during
    finally:
        await queued.terminate()


def test_a_call_outside_an_event_loop_starts_nothing(namespace: str) -> None:
    Kubectl().run("create", "namespace", namespace, check=False)
    name = unique("nowhere")
    with pytest.raises(RuntimeError, match="event loop"):
        sandlot.AsyncClient(namespace).sandboxes.create("docker.io/library/busybox:1.36", name=name)
    time.sleep(1)  # room for a stray request to land
    assert Kubectl(namespace).run("get", "pod", name, check=False).returncode != 0
