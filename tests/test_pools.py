"""Warm pools on a real cluster: a create takes a warm sandbox (env, tags, ttl
and network mode as asked), the claimer starts its replacement, two clients
claiming at once never share a pod, an image change never empties the pool,
deleting a pool ends its warm sandboxes but not those claimed from it, and
every create that no warm sandbox fits is served cold with the reason said."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

import sandlot
from conftest import Kubectl, unique
from test_network import FIRST_TARGETS, PYTHON, outcomes_in, probe_line

BUSYBOX = "docker.io/library/busybox:1.36"
FILL = 180.0  # seconds a pool may take to fill on a loaded machine


@pytest.fixture
async def client(sandlot_namespace: str) -> AsyncIterator[sandlot.AsyncClient]:
    async with sandlot.AsyncClient(sandlot_namespace) as client:
        yield client


@pytest.fixture
async def pool(client: sandlot.AsyncClient) -> AsyncIterator[str]:
    """A full pool of 2 busybox sandboxes, deleted after the test."""
    name = unique("pool")
    status = await client.pools.create(name, BUSYBOX, size=2, wait=FILL)
    assert (status.ready, status.size) == (2, 2)
    yield name
    try:
        await client.pools.delete(name)
    except sandlot.NotFoundError:
        pass


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = FILL) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.5)
    pytest.fail(f"not within {within}s: {what}")


async def test_a_create_takes_a_warm_sandbox_with_its_env_tags_and_lifetime(
    client: sandlot.AsyncClient, pool: str, sandlot_namespace: str
) -> None:
    sb = await client.sandboxes.create(pool=pool, env={"TASK": "t-1", "MODE": "claim"}, tags={"task": "t-1"})
    # Taken warm: running already, named by the pool, the fallback unsaid.
    assert sb.status.phase == sandlot.Phase.RUNNING
    assert (sb.status.pool, sb.status.warm, sb.status.pool_fallback) == (pool, False, None)
    assert sb.name.startswith(f"{pool}-")
    assert sb.status.image == BUSYBOX
    assert sb.status.tags == {"task": "t-1"}
    assert (await sb.exec(["sh", "-c", 'echo "$TASK $MODE"'])).stdout == "t-1 claim\n"
    # An exec's own env wins over the sandbox's.
    assert (await sb.exec(["sh", "-c", "echo $MODE"], env={"MODE": "exec"})).stdout == "exec\n"
    process = await sb.spawn(["sh", "-c", "echo $TASK"], detach=True)
    assert await process.read_stdout() == b"t-1\n"
    assert await process.wait() == 0
    # A client that did not claim it sees the same environment.
    async with sandlot.AsyncClient(sandlot_namespace, exec_path="kubernetes") as other:
        found = await other.sandboxes.get(sb.name)
        assert (await found.exec(["sh", "-c", "echo $TASK"])).stdout == "t-1\n"
    assert [s.name for s in await client.sandboxes.list(tags={"task": "t-1"})] == [sb.name]

    # The claimer started a replacement: the pool is full again by itself.
    async def refilled() -> bool:
        status = await client.pools.get(pool)
        return status.ready == 2 and sb.name not in await warm_names(sandlot_namespace, pool)

    await until(refilled, "the pool refilled after a claim")

    # The lifetime asked for holds from the claim, not from the warm pod's start.
    short = await client.sandboxes.create(pool=pool, ttl_seconds=5)
    assert short.status.pool_fallback is None
    ended = await short.wait(["failed", "succeeded"], timeout=60)
    assert (ended.phase, ended.termination_reason) == (sandlot.Phase.FAILED, "ttl_expired")
    await sb.terminate()


async def warm_names(namespace: str, pool: str) -> set[str]:
    out = Kubectl(namespace).run(
        "get", "pods", "-l", f"sandlot.dev/pool={pool},sandlot.dev/warm", "-o", "jsonpath={.items[*].metadata.name}"
    )
    return set(out.stdout.split())


async def test_two_clients_claiming_at_once_never_share_a_sandbox(
    client: sandlot.AsyncClient, sandlot_namespace: str
) -> None:
    name = unique("pool")
    await client.pools.create(name, BUSYBOX, size=6, wait=FILL)
    try:
        async with sandlot.AsyncClient(sandlot_namespace) as second:
            creates = [c.sandboxes.create(pool=name, env={"N": str(i)}) for i in range(5) for c in (client, second)]
            made = await asyncio.gather(*creates)
        names = [sb.name for sb in made]
        assert len(set(names)) == len(names) == 10
        warm = [sb for sb in made if sb.status.pool_fallback is None]
        cold = [sb for sb in made if sb.status.pool_fallback is not None]
        assert len(warm) == 6, [sb.status.pool_fallback for sb in made]
        assert all("no warm sandbox ready" in (sb.status.pool_fallback or "") for sb in cold)
        # Each warm one is its own pod, with its own environment.
        for sb in made:
            await sb.wait("running", timeout=FILL)
        outputs = await asyncio.gather(*(sb.exec(["sh", "-c", "echo $N $(cat /etc/hostname)"]) for sb in made))
        assert sorted(o.stdout.split()[0] for o in outputs) == sorted(str(i) for i in range(5) for _ in (0, 1))
        assert len({o.stdout.split()[1] for o in outputs}) == 10
        await client.sandboxes.terminate_many(made)
    finally:
        await client.pools.delete(name)


async def test_an_image_change_replaces_warm_sandboxes_without_emptying_the_pool(
    client: sandlot.AsyncClient, pool: str, sandlot_namespace: str
) -> None:
    before = await client.pools.get(pool)
    await client.pools.update(pool, PYTHON)
    # Until a new one is ready, a claim takes one of the old template, warm.
    during = await client.sandboxes.create(pool=pool)
    assert during.status.pool_fallback is None
    assert during.status.image == BUSYBOX
    seen: list[tuple[int, int]] = []

    async def watch() -> None:
        while True:
            status = await client.pools.get(pool)
            seen.append((status.ready, status.stale))
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch())
    try:
        full = await client.pools.fill(pool, wait=FILL)
    finally:
        watcher.cancel()
    assert (full.ready, full.stale, full.image) == (2, 0, PYTHON)
    assert full.version != before.version
    assert seen and all(ready + stale > 0 for ready, stale in seen), seen
    pods = json.loads(
        Kubectl(sandlot_namespace)
        .run("get", "pods", "-l", f"sandlot.dev/pool={pool},sandlot.dev/warm", "-o", "json")
        .stdout
    )["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert {p["spec"]["containers"][0]["image"] for p in live} == {PYTHON}
    after = await client.sandboxes.create(pool=pool)
    assert (after.status.image, after.status.pool_fallback) == (PYTHON, None)
    await client.sandboxes.terminate_many([during, after])


async def test_deleting_a_pool_ends_its_warm_sandboxes_not_the_claimed_ones(
    client: sandlot.AsyncClient, pool: str, sandlot_namespace: str
) -> None:
    claimed = await client.sandboxes.create(pool=pool)
    ended = await client.pools.delete(pool)
    assert ended >= 1
    with pytest.raises(sandlot.NotFoundError) as missing:
        await client.pools.get(pool)
    assert missing.value.kind == "pool"

    async def gone() -> bool:
        return not await warm_names(sandlot_namespace, pool)

    await until(gone, "the warm sandboxes ended", within=60)
    assert (await claimed.exec(["echo", "still here"])).stdout == "still here\n"
    assert (await claimed.refresh()).phase == sandlot.Phase.RUNNING
    with pytest.raises(sandlot.NotFoundError):
        await client.sandboxes.create(pool=pool)
    await claimed.terminate()


async def test_a_create_that_no_warm_sandbox_fits_is_served_cold_saying_why(
    client: sandlot.AsyncClient, pool: str
) -> None:
    named = await client.sandboxes.create(pool=pool, name=unique("named"), env={"A": "cold"})
    other_image = await client.sandboxes.create(PYTHON, pool=pool)
    longer = await client.sandboxes.create(pool=pool, ttl_seconds=None)
    reasons = [sb.status.pool_fallback or "" for sb in (named, other_image, longer)]
    assert "name" in reasons[0] and "image" in reasons[1] and "max_ttl_seconds" in reasons[2], reasons
    assert all(sb.status.pool == pool for sb in (named, other_image, longer))
    # Served cold from the pool's template, with what the create asked for.
    await named.wait("running", timeout=FILL)
    assert (await named.exec(["sh", "-c", "echo $A"])).stdout == "cold\n"
    assert other_image.status.image == PYTHON
    # An empty pool never blocks a create.
    await client.pools.resize(pool, 0)
    empty = await client.sandboxes.create(pool=pool)
    assert "no warm sandbox ready" in (empty.status.pool_fallback or "")
    await client.sandboxes.terminate_many([named, other_image, longer, empty])


async def test_bad_input_is_refused_before_any_request(client: sandlot.AsyncClient, sandlot_namespace: str) -> None:
    cases: list[tuple[Callable[[], Awaitable[object]], str]] = [
        (lambda: client.pools.create("Bad_Name", BUSYBOX), "name"),
        (lambda: client.pools.create("p" * 41, BUSYBOX), "name"),
        (lambda: client.pools.create("ok", BUSYBOX, size=501), "size"),
        (lambda: client.pools.create("ok", BUSYBOX, idle_seconds=1), "idle_seconds"),
        (lambda: client.pools.create("ok", BUSYBOX, resources={"cpu": "lots"}), "resources.cpu"),
        (lambda: client.pools.create("ok", "", size=1), "image"),
        (lambda: client.sandboxes.create(pool="Bad_Name"), "pool"),
        (lambda: client.sandboxes.create(), "image"),
    ]
    for call, field in cases:
        with pytest.raises(sandlot.InvalidSpecError) as refused:
            await call()
        assert refused.value.field == field
    with pytest.raises(sandlot.NotFoundError):
        await client.sandboxes.create(pool="no-such-pool")
    assert "ok" not in [p.name for p in await client.pools.list()]
    kubectl = Kubectl(sandlot_namespace)
    assert not kubectl.run("get", "pods", "-l", "sandlot.dev/pool in (ok,no-such-pool)", "-o", "name").stdout.strip()
    assert kubectl.run("get", "configmap", "sandlot-pool-ok", check=False).returncode != 0


async def test_warm_sandboxes_are_kept_out_of_listings_and_bulk_terminates(
    client: sandlot.AsyncClient, pool: str, sandlot_namespace: str
) -> None:
    own = await client.sandboxes.create(BUSYBOX)
    warm = await warm_names(sandlot_namespace, pool)
    listed = {s.name for s in await client.sandboxes.list()}
    assert own.name in listed and len(warm) == 2 and not listed & warm
    results = await client.sandboxes.terminate_many(all=True)
    assert own.name in {r.name for r in results} and not {r.name for r in results} & warm
    status = await client.pools.get(pool)
    assert (status.ready, status.stale) == (2, 0)
    assert await warm_names(sandlot_namespace, pool) == warm
    # Seen, but nothing may run in it until a create claims it.
    waiting = await client.sandboxes.get(sorted(warm)[0])
    assert (waiting.status.warm, waiting.status.pool) == (True, pool)
    for attempt in (waiting.exec(["true"]), waiting.spawn(["true"]), waiting.files.read("/etc/hostname")):
        with pytest.raises(sandlot.ExecError, match="warm sandbox of pool"):
            await attempt
    async with sandlot.AsyncClient(sandlot_namespace, exec_path="kubernetes") as other:
        with pytest.raises(sandlot.ExecError, match="warm sandbox of pool"):
            await (await other.sandboxes.get(waiting.name)).exec(["true"])
    assert pool in [p.name for p in await client.pools.list()]


async def test_a_claimed_sandbox_keeps_the_pools_network_and_leaves_nothing_to_the_next(
    client: sandlot.AsyncClient,
) -> None:
    name = unique("pool")
    await client.pools.create(name, PYTHON, size=2, wait=FILL)
    try:
        sb = await client.sandboxes.create(pool=name)
        assert (sb.status.pool_fallback, sb.status.network) == (None, "internet")
        result = await sb.exec(probe_line(FIRST_TARGETS), timeout=120)
        outcomes = outcomes_in(result.stdout)
        assert all(outcome != "connected" for outcome in outcomes.values()), outcomes
        # What one user leaves in a sandbox never reaches the next: claimed
        # sandboxes never go back to the pool.
        await sb.exec(["sh", "-c", "echo secret > /tmp/left-behind"])
        await sb.terminate()
        following = await client.sandboxes.create(pool=name)
        assert following.name != sb.name
        assert (await following.exec(["ls", "/tmp"])).stdout == ""
        # Asking for another network mode is served cold, with that mode.
        open_one = await client.sandboxes.create(pool=name, network="unrestricted")
        assert "network" in (open_one.status.pool_fallback or "")
        await client.sandboxes.terminate_many([following, open_one])
    finally:
        await client.pools.delete(name)


def test_the_sync_client_manages_pools(sandlot_namespace: str) -> None:
    name = unique("pool")
    with sandlot.Client(sandlot_namespace) as client:
        status = client.pools.create(name, BUSYBOX, size=1, wait=FILL)
        assert isinstance(status, sandlot.PoolStatus)
        assert client.pools.get(name).ready == 1
        with client.sandboxes.create(pool=name, env={"X": "sync"}) as sb:
            assert sb.exec(["sh", "-c", "echo $X"]).stdout == "sync\n"
        assert client.pools.resize(name, 0).size == 0
        client.pools.delete(name)
        assert client.pools.list() == []
