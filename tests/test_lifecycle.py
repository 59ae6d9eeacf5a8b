"""The whole sandbox lifecycle on a real cluster: each phase and termination
reason as users see them, names, tags, hardening options, TTL, bulk terminate,
purge, and waiting on many sandboxes through one watch."""

from __future__ import annotations

import asyncio
import gc
import re
from collections.abc import Callable

import pytest

import sandlot
import sandlot._testing as sandlot_testing
from conftest import Kubectl, unique
from sandlot import _testing

BUSYBOX = "docker.io/library/busybox:1.36"
PYTHON = "docker.io/library/python:3.11-slim"


async def test_queued_while_unschedulable_then_terminated_without_ever_running(
    sandlot_async_client: sandlot.AsyncClient, sandlot_namespace: str
) -> None:
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, resources={"cpu": "64", "memory": "64Mi"})
    status = await sb.wait("queued", timeout=60)
    assert status.phase == sandlot.Phase.QUEUED
    # The scheduler says why, once it has tried.
    for _ in range(50):
        status = await sb.refresh()
        if status.message:
            break
        await asyncio.sleep(0.1)
    assert status.message is not None and "Insufficient cpu" in status.message
    terminated = await sb.terminate()
    assert (terminated.phase, terminated.termination_reason) == (
        sandlot.Phase.TERMINATED,
        sandlot.TerminationReason.TERMINATED,
    )
    pod = Kubectl(sandlot_namespace).json("get", "pod", sb.name)
    assert "nodeName" not in pod["spec"], "a terminated sandbox is never scheduled"


async def test_terminated_while_queued_never_runs_its_command_once_capacity_frees(
    sandlot_async_client: sandlot.AsyncClient, sandlot_namespace: str
) -> None:
    # The blocker takes all but 100m of the node's free CPU, so the sandbox
    # asking for all but 150m waits until the blocker is gone.
    free = await asyncio.to_thread(free_node_millicpu)
    blocker = await sandlot_async_client.sandboxes.create(
        BUSYBOX, resources={"cpu": f"{free - 100}m", "memory": "32Mi"}
    )
    await blocker.wait("running", timeout=60)
    sb = await sandlot_async_client.sandboxes.create(
        BUSYBOX, command=["sh", "-c", "echo STARTED; sleep 600"], resources={"cpu": f"{free - 150}m", "memory": "32Mi"}
    )
    assert (await sb.wait("queued", timeout=60)).phase == sandlot.Phase.QUEUED
    assert (await sb.terminate()).phase == sandlot.Phase.TERMINATED
    await blocker.terminate()
    kubectl = Kubectl(sandlot_namespace)
    # Capacity is free: the scheduler places the pod, and the node must not start the command.
    await asyncio.to_thread(
        kubectl.run, "wait", "--for=jsonpath={.spec.nodeName}=sandlot-node", f"pod/{sb.name}", "--timeout=90s"
    )
    await asyncio.to_thread(
        kubectl.run, "wait", "--for=jsonpath={.status.phase}=Failed", f"pod/{sb.name}", "--timeout=90s"
    )
    pod = kubectl.json("get", "pod", sb.name)
    for container in pod["status"].get("containerStatuses", []):
        assert "running" not in container["state"] and "terminated" not in container["state"], container
    assert "STARTED" not in kubectl.run("logs", sb.name, check=False).stdout
    status = await sb.refresh()
    assert (status.phase, status.termination_reason) == (sandlot.Phase.TERMINATED, sandlot.TerminationReason.TERMINATED)
    assert status.image == BUSYBOX, "the image the sandbox was created with"


async def test_a_command_that_ends_by_itself_just_after_terminate_still_reads_terminated(
    sandlot_async_client: sandlot.AsyncClient, sandlot_namespace: str
) -> None:
    # Each command exits by itself a fraction of a second after terminate is
    # asked, before the node stops it: its finish time (whole seconds, the
    # node's clock) then usually falls in the second terminate was asked.
    ends_soon = ["sh", "-c", "until [ -e /tmp/go ]; do sleep 0.05; done; sleep 0.2"]
    sandboxes = [await sandlot_async_client.sandboxes.create(BUSYBOX, command=ends_soon) for _ in range(5)]
    await sandlot_async_client.sandboxes.wait_all(sandboxes, "running", timeout=90)
    for sb in sandboxes:
        assert (await sb.exec("touch /tmp/go")).exit_code == 0
        assert (await sb.terminate()).phase == sandlot.Phase.TERMINATED
    kubectl = Kubectl(sandlot_namespace)
    for sb in sandboxes:
        await asyncio.to_thread(
            kubectl.run,
            "wait",
            "--for=jsonpath={.status.containerStatuses[0].state.terminated.reason}",
            f"pod/{sb.name}",
            "--timeout=60s",
        )
        status = await sb.refresh()
        assert (status.phase, status.termination_reason) == (
            sandlot.Phase.TERMINATED,
            sandlot.TerminationReason.TERMINATED,
        ), status


async def test_creating_while_the_runtime_is_prepared_then_terminated(
    sandlot_async_client: sandlot.AsyncClient, sandlot_namespace: str
) -> None:
    # A runtime class whose handler containerd lacks: the pod is scheduled, and
    # the runtime cannot be prepared, so it stays in creating.
    runtime_class = unique("missing-handler")
    Kubectl().apply(
        f"apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {{name: {runtime_class}}}\nhandler: no-such-handler\n"
    )
    try:
        sb = await sandlot_async_client.sandboxes.create(BUSYBOX, runtime_class=runtime_class)
        status = await sb.wait("creating", timeout=60)
        assert status.phase == sandlot.Phase.CREATING
        await asyncio.sleep(2)
        assert (await sb.refresh()).phase == sandlot.Phase.CREATING
        assert (await sb.terminate()).phase == sandlot.Phase.TERMINATED
        assert (await sb.refresh()).phase == sandlot.Phase.TERMINATED
    finally:
        Kubectl().run("delete", "runtimeclass", runtime_class, check=False)


async def test_unpullable_image_is_retried_a_while_then_fails_with_launch_failed(
    sandlot_async_client: sandlot.AsyncClient, sandlot_namespace: str
) -> None:
    # No registry is reachable from this cluster: the pull fails with a network
    # error, which may heal, so the sandbox reads creating (with the pull error)
    # while the kubelet retries, and failed once the retry window has passed.
    sb = await sandlot_async_client.sandboxes.create("docker.io/library/no-such-image-sandlot:1.0")
    for _ in range(300):
        status = await sb.refresh()
        if status.message and "no-such-image-sandlot" in status.message:
            break
        await asyncio.sleep(0.2)
    assert (status.phase, status.termination_reason) == (sandlot.Phase.CREATING, None), status
    assert status.message is not None and "no-such-image-sandlot" in status.message
    default_window = sandlot_testing.set_launch_retry_window(3)
    try:
        with pytest.raises(sandlot.PhaseUnreachableError) as caught:
            await sb.wait("running", timeout=120)
    finally:
        sandlot_testing.set_launch_retry_window(default_window)
    status = caught.value.status
    assert status.phase == sandlot.Phase.FAILED
    assert status.termination_reason == sandlot.TerminationReason.LAUNCH_FAILED
    assert status.message is not None and "no-such-image-sandlot" in status.message
    # Settled: Kubernetes stops retrying, and the sandbox stays failed.
    await asyncio.to_thread(
        Kubectl(sandlot_namespace).run,
        "wait",
        "--for=jsonpath={.status.phase}=Failed",
        f"pod/{sb.name}",
        "--timeout=60s",
    )
    again = (await sandlot_async_client.sandboxes.get(sb.name)).status
    assert (again.phase, again.termination_reason) == (sandlot.Phase.FAILED, sandlot.TerminationReason.LAUNCH_FAILED)
    assert (await sb.terminate()).phase == sandlot.Phase.FAILED, "terminate leaves an ended sandbox as it is"


async def test_exceeding_the_memory_limit_fails_with_oom_killed(sandlot_async_client: sandlot.AsyncClient) -> None:
    sb = await sandlot_async_client.sandboxes.create(
        PYTHON,
        command=["python3", "-c", "data = b'x' * (512 * 1024 * 1024); print(len(data))"],
        resources={"memory": "64Mi"},
    )
    status = await sb.wait(["succeeded", "failed"], timeout=120)
    assert status.phase == sandlot.Phase.FAILED
    assert status.termination_reason == sandlot.TerminationReason.OOM_KILLED
    assert status.exit_code == 137


async def test_writing_past_the_disk_limit_ends_that_sandbox_with_disk_exceeded(
    sandlot_async_client: sandlot.AsyncClient,
) -> None:
    """The kubelet measures each sandbox's disk (its filesystem, /tmp and logs)
    every few seconds and evicts the one over its limit; its neighbour runs on."""
    client = sandlot_async_client
    neighbour = await client.sandboxes.create(BUSYBOX)
    writer = await client.sandboxes.create(
        BUSYBOX,
        command=["sh", "-c", "dd if=/dev/zero of=/big bs=1M count=64 && sleep 600"],
        resources={"disk": "32Mi"},
    )
    status = await writer.wait(["succeeded", "failed"], timeout=180)
    assert (status.phase, status.termination_reason) == (
        sandlot.Phase.FAILED,
        sandlot.TerminationReason.DISK_EXCEEDED,
    ), status
    assert status.message and "32Mi" in status.message
    assert (await neighbour.refresh()).phase == sandlot.Phase.RUNNING
    assert (await neighbour.exec(["echo", "ok"])).stdout == "ok\n"
    limits = Kubectl(client.namespace).json("get", "pod", neighbour.name)["spec"]["containers"][0]["resources"]
    assert limits["limits"]["ephemeral-storage"] == "2Gi", "every sandbox has a disk limit"


async def test_ttl_ends_the_sandbox_with_ttl_expired(sandlot_async_client: sandlot.AsyncClient) -> None:
    # The lifetime counts from the pod's start, the network gate's seconds included.
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, ttl_seconds=8)
    await sb.wait("running", timeout=60)
    status = await sb.wait("failed", timeout=60)
    assert status.termination_reason == sandlot.TerminationReason.TTL_EXPIRED
    assert status.finished_at is not None and status.started_at is not None
    assert (status.finished_at - status.started_at).total_seconds() >= 2


async def test_terminate_is_idempotent(sandlot_async_client: sandlot.AsyncClient) -> None:
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX)
    await sb.wait("running", timeout=60)
    first = await sb.terminate()
    second = await sb.terminate()
    assert first.phase == second.phase == sandlot.Phase.TERMINATED
    [result] = await sandlot_async_client.sandboxes.terminate_many([sb])
    assert result.terminated and result.error is None


async def test_env_tags_and_opt_in_hardening(sandlot_async_client: sandlot.AsyncClient) -> None:
    tag = unique("t")
    sb = await sandlot_async_client.sandboxes.create(
        BUSYBOX,
        env={"GREETING": "hello there"},
        tags={"suite": tag, "kind": "hardened"},
        run_as_user=1000,
        read_only_root_filesystem=True,
    )
    await sb.wait("running", timeout=60)
    assert (await sb.exec("echo $GREETING; id -u")).stdout == "hello there\n1000\n"
    assert (await sb.exec("touch /should-fail")).exit_code != 0
    assert (await sb.exec("touch /tmp/ok && echo ok")).stdout == "ok\n"
    listed = await sandlot_async_client.sandboxes.list(tags={"suite": tag})
    assert [s.name for s in listed] == [sb.name]
    assert listed[0].status.tags == {"suite": tag, "kind": "hardened"}
    assert await sandlot_async_client.sandboxes.list(tags={"suite": tag, "kind": "other"}) == []
    await sb.terminate()


async def test_root_in_the_image_has_no_capabilities(sandlot_async_client: sandlot.AsyncClient) -> None:
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX)
    await sb.wait("running", timeout=60)
    caps = (await sb.exec("grep CapEff /proc/self/status")).stdout
    assert caps.split() == ["CapEff:", "0000000000000000"]
    assert (await sb.exec("ls /var/run/secrets/kubernetes.io 2>&1")).exit_code != 0, "no service-account token"
    await sb.terminate()


async def test_purge_deletes_ended_records_and_frees_their_names(sandlot_async_client: sandlot.AsyncClient) -> None:
    tag = unique("purge")
    done_name = unique("done")
    done = await sandlot_async_client.sandboxes.create(BUSYBOX, name=done_name, command=["true"], tags={"suite": tag})
    active = await sandlot_async_client.sandboxes.create(BUSYBOX, tags={"suite": tag})
    await done.wait("succeeded", timeout=60)
    await active.wait("running", timeout=60)
    assert await sandlot_async_client.sandboxes.purge(tags={"suite": tag}, older_than=3600) == []
    purged = await sandlot_async_client.sandboxes.purge(tags={"suite": tag})
    assert purged == [done_name], "active sandboxes are never purged"
    with pytest.raises(sandlot.NotFoundError):
        await sandlot_async_client.sandboxes.get(done_name)
    again = await sandlot_async_client.sandboxes.create(BUSYBOX, name=done_name, command=["true"])
    assert again.name == done_name
    await active.terminate()


async def test_purge_of_a_workload_still_stopping_keeps_its_record_until_it_stopped(
    sandlot_async_client: sandlot.AsyncClient, sandlot_namespace: str
) -> None:
    # The command ignores the stop signal, so the node kills it only at the end
    # of its grace period; until then the record must stay.
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, command=["sh", "-c", "trap '' TERM; sleep 600"])
    await sb.wait("running", timeout=60)
    assert (await sb.terminate()).phase == sandlot.Phase.TERMINATED
    assert await sandlot_async_client.sandboxes.purge(names=[sb.name]) == [sb.name]
    pod = Kubectl(sandlot_namespace).json("get", "pod", sb.name)
    assert pod["metadata"].get("deletionTimestamp"), "marked for deletion"
    await asyncio.to_thread(Kubectl(sandlot_namespace).run, "wait", "--for=delete", f"pod/{sb.name}", "--timeout=60s")
    with pytest.raises(sandlot.NotFoundError):
        await sb.refresh()


async def test_huge_timeouts_are_long_waits_and_bad_lifetimes_or_mounts_are_refused(
    sandlot_async_client: sandlot.AsyncClient, sandlot_namespace: str
) -> None:
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX)
    try:
        assert (await sb.wait("running", timeout=1e19)).phase == sandlot.Phase.RUNNING
        assert (await sb.exec("echo fine", timeout=1e19)).stdout == "fine\n"
        with sandlot.Client(sandlot_namespace) as client:
            assert client.sandboxes.get(sb.name).wait("running", timeout=1e19).phase == sandlot.Phase.RUNNING
    finally:
        await sb.terminate()
    pods_before = Kubectl(sandlot_namespace).run("get", "pods", "-o", "name").stdout
    refused = await asyncio.gather(
        sandlot_async_client.sandboxes.create(BUSYBOX, ttl_seconds=2**40),
        sandlot_async_client.sandboxes.create(BUSYBOX, volume_mounts={"/proc": "scratch"}),
        sandlot_async_client.sandboxes.create(BUSYBOX, volume_mounts={"/": "scratch"}),
        return_exceptions=True,
    )
    assert [getattr(e, "field", e) for e in refused] == [
        "ttl_seconds",
        'volume_mounts["/proc"]',
        'volume_mounts["/"]',
    ]
    assert Kubectl(sandlot_namespace).run("get", "pods", "-o", "name").stdout == pods_before


async def test_bulk_selection_is_validated_before_any_request(sandlot_async_client: sandlot.AsyncClient) -> None:
    with pytest.raises(sandlot.InvalidSpecError) as caught:
        await sandlot_async_client.sandboxes.terminate_many()
    assert caught.value.field == "names"
    with pytest.raises(sandlot.InvalidSpecError) as caught:
        await sandlot_async_client.sandboxes.terminate_many(["a"], all=True)
    assert caught.value.field == "all"
    with pytest.raises(sandlot.InvalidSpecError) as caught:
        await sandlot_async_client.sandboxes.wait_all(["Bad_Name"], "running", timeout=1)
    assert caught.value.field == "name"


def free_node_millicpu() -> int:
    """The node's allocatable CPU less what its unfinished pods request, in millicores."""

    def millicores(quantity: str) -> int:
        return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)

    node = Kubectl().json("get", "node", "sandlot-node")
    pods = Kubectl().json("get", "pods", "--all-namespaces", "--field-selector", "spec.nodeName=sandlot-node")
    requested = sum(
        millicores(c.get("resources", {}).get("requests", {}).get("cpu", "0"))
        for pod in pods["items"]
        if pod["status"].get("phase") not in ("Succeeded", "Failed")
        for c in pod["spec"]["containers"]
    )
    return millicores(node["status"]["allocatable"]["cpu"]) - requested


async def quiet_watch_count() -> int:
    """The open namespaced pod watches once the count holds still: clients of
    earlier tests that are no longer referenced are collected first (each
    closes its watch when it goes), so none closes in the middle of a count."""
    gc.collect()
    count = await asyncio.to_thread(open_namespaced_pod_watches)
    for _ in range(20):
        await asyncio.sleep(0.5)
        now = await asyncio.to_thread(open_namespaced_pod_watches)
        if now == count:
            break
        count = now
    return count


def open_namespaced_pod_watches() -> int:
    metrics = Kubectl().run("get", "--raw", "/metrics").stdout
    pattern = r'^apiserver_longrunning_requests\{[^}]*resource="pods",scope="namespace",subresource="",verb="WATCH"[^}]*\} (\d+)'
    return sum(int(m) for m in re.findall(pattern, metrics, flags=re.MULTILINE))


async def test_a_hundred_sandboxes_waited_through_one_watch_then_terminated_by_tag(sandlot_namespace: str) -> None:
    tag = unique("fleet")
    async with sandlot.AsyncClient(sandlot_namespace) as fleet_client:
        sandboxes = await asyncio.gather(
            *(fleet_client.sandboxes.create(BUSYBOX, tags={"fleet": tag}) for _ in range(100))
        )
        assert len({sb.name for sb in sandboxes}) == 100
        before = await quiet_watch_count()

        watches_during_wait: list[int] = []

        async def sample_watches() -> None:
            while True:
                watches_during_wait.append(await asyncio.to_thread(open_namespaced_pod_watches))
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample_watches())
        try:
            statuses = await fleet_client.sandboxes.wait_all(sandboxes, "running", timeout=600)
        finally:
            sampler.cancel()
        assert [s.phase for s in statuses] == [sandlot.Phase.RUNNING] * 100
        assert watches_during_wait, "the wait lasted long enough to sample"
        assert max(watches_during_wait) == before + 1, "100 waiters shared one watch connection"

        results = await fleet_client.sandboxes.terminate_many(tags={"fleet": tag})
        assert len(results) == 100
        assert all(r.terminated and r.error is None for r in results)
        assert sorted(r.name for r in results) == sorted(sb.name for sb in sandboxes)
        terminated = await fleet_client.sandboxes.list(tags={"fleet": tag}, phase="terminated")
        assert len(terminated) == 100

    # None left running: every pod stops within its grace period.
    def pods_still_running() -> int:
        pods = Kubectl(sandlot_namespace).json("get", "pods", "-l", f"tags.sandlot.dev/fleet={tag}")["items"]
        return sum(1 for p in pods if p["status"].get("phase") in ("Running", "Pending"))

    for _ in range(120):
        if await asyncio.to_thread(pods_still_running) == 0:
            break
        await asyncio.sleep(1)
    assert await asyncio.to_thread(pods_still_running) == 0


async def test_waits_outlive_the_watch_task_dying(sandlot_async_client: sandlot.AsyncClient) -> None:
    client = sandlot_async_client
    running = await client.sandboxes.create(BUSYBOX)
    await running.wait("running", timeout=120)  # the client's pod watch now runs
    assert _testing.stop_pod_watch(client)
    # Waits begun after the watch task died see their transitions...
    exits = await client.sandboxes.create(BUSYBOX, command=["sh", "-c", "sleep 1; exit 3"])
    status = await exits.wait(["succeeded", "failed"], timeout=120)
    assert (status.phase, status.exit_code) == (sandlot.Phase.FAILED, 3)
    # ...and so do waits under way when it dies.
    later = await client.sandboxes.create(BUSYBOX, command=["sh", "-c", "sleep 3; exit 4"])
    waiting = asyncio.ensure_future(later.wait(["succeeded", "failed"], timeout=120))
    await asyncio.sleep(0.5)
    assert _testing.stop_pod_watch(client)
    status = await waiting
    assert (status.phase, status.exit_code) == (sandlot.Phase.FAILED, 4)
    await running.terminate()


def deadline_of(namespace: str, name: str) -> int | None:
    """The pod's activeDeadlineSeconds: the sandbox's lifetime as Kubernetes enforces it."""
    deadline: int | None = Kubectl(namespace).json("get", "pod", name)["spec"].get("activeDeadlineSeconds")
    return deadline


async def test_sandboxes_have_a_finite_default_lifetime_and_none_only_when_asked(
    sandlot_async_client: sandlot.AsyncClient, sandlot_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sandbox whose client dies still ends: an hour unless someone says otherwise.
    default = await sandlot_async_client.sandboxes.create(BUSYBOX, command=["true"])
    unlimited = await sandlot_async_client.sandboxes.create(BUSYBOX, command=["true"], ttl_seconds=None)
    given = await sandlot_async_client.sandboxes.create(BUSYBOX, command=["true"], ttl_seconds=90)
    assert [deadline_of(sandlot_namespace, sb.name) for sb in (default, unlimited, given)] == [3600, None, 90]

    # The client's default, from its argument or else $SANDLOT_DEFAULT_TTL.
    monkeypatch.setenv("SANDLOT_DEFAULT_TTL", "600")
    async with sandlot.AsyncClient(sandlot_namespace) as from_env:
        assert deadline_of(sandlot_namespace, (await from_env.sandboxes.create(BUSYBOX, command=["true"])).name) == 600
    async with sandlot.AsyncClient(sandlot_namespace, default_ttl_seconds=120) as short:
        assert deadline_of(sandlot_namespace, (await short.sandboxes.create(BUSYBOX, command=["true"])).name) == 120
    monkeypatch.setenv("SANDLOT_DEFAULT_TTL", "none")
    with sandlot.Client(sandlot_namespace) as forever:
        assert deadline_of(sandlot_namespace, forever.sandboxes.create(BUSYBOX, command=["true"]).name) is None
    with sandlot.Client(sandlot_namespace, default_ttl_seconds=None) as forever:
        sb = forever.sandboxes.create(BUSYBOX, command=["true"], ttl_seconds=30)
        assert deadline_of(sandlot_namespace, sb.name) == 30

    # Bad settings are refused where they are made, naming the setting.
    pods_before = Kubectl(sandlot_namespace).run("get", "pods", "-o", "name").stdout
    with pytest.raises(sandlot.InvalidSpecError) as caught:
        sandlot.AsyncClient(sandlot_namespace, default_ttl_seconds=0)
    assert caught.value.field == "default_ttl_seconds"
    monkeypatch.setenv("SANDLOT_DEFAULT_TTL", "soon")
    with pytest.raises(sandlot.InvalidSpecError) as caught:
        sandlot.Client(sandlot_namespace)
    assert caught.value.field == "$SANDLOT_DEFAULT_TTL"
    assert Kubectl(sandlot_namespace).run("get", "pods", "-o", "name").stdout == pods_before


def test_the_command_line_has_the_same_default_lifetime(sandlot_namespace: str) -> None:
    from test_cli import sandlot as run_cli

    made = [
        run_cli(sandlot_namespace, "create", BUSYBOX, "-o", "name", *ttl, "--", "true")
        for ttl in ([], ["--ttl", "none"], ["--ttl", "45"])
    ]
    assert [m.returncode for m in made] == [0, 0, 0], [m.stderr for m in made]
    assert [deadline_of(sandlot_namespace, m.stdout.strip()) for m in made] == [3600, None, 45]
    refused = run_cli(sandlot_namespace, "create", BUSYBOX, "--ttl", "soon")
    assert refused.returncode == 2
    assert "invalid --ttl" in refused.stderr, refused.stderr


async def test_create_errors_carry_the_sandbox_name(
    sandlot_async_client: sandlot.AsyncClient, sandlot_namespace: str
) -> None:
    with pytest.raises(sandlot.NotFoundError) as missing:
        await sandlot_async_client.sandboxes.create(BUSYBOX, volume_mounts={"/m": unique("missing")})
    generated = missing.value.sandbox_name
    assert generated is not None and generated.startswith("sb-"), missing.value
    assert f'creating sandbox "{generated}": volume' in str(missing.value)
    assert missing.value.kind == "volume"

    taken = await sandlot_async_client.sandboxes.create(BUSYBOX, command=["true"])
    with pytest.raises(sandlot.NameConflictError) as conflict:
        await sandlot_async_client.sandboxes.create(BUSYBOX, name=taken.name)
    assert conflict.value.sandbox_name == taken.name
    with sandlot.Client(sandlot_namespace) as client, pytest.raises(sandlot.NameConflictError) as conflict:
        client.sandboxes.create(BUSYBOX, name=taken.name)
    assert conflict.value.sandbox_name == taken.name
    with pytest.raises(sandlot.NotFoundError) as other:
        await sandlot_async_client.sandboxes.get(unique("absent"))
    assert other.value.sandbox_name is None, "only create errors carry it"


async def test_a_cancelled_create_leaves_no_sandbox_behind(
    sandlot_async_client: sandlot.AsyncClient, sandlot_namespace: str
) -> None:
    """Creates cancelled at spread-out moments, many of them after their
    request was sent: each one either returned its sandbox or leaves none."""
    run = unique("cancel")
    await sandlot_async_client.connect()
    returned: set[str] = set()
    for attempt in range(40):
        task = asyncio.ensure_future(sandlot_async_client.sandboxes.create(BUSYBOX, tags={"run": run}))
        await asyncio.sleep(attempt * 0.002)
        task.cancel()
        try:
            returned.add((await task).name)
        except asyncio.CancelledError:
            pass
    kubectl = Kubectl(sandlot_namespace)
    selector = f"tags.sandlot.dev/run={run}"
    left: set[str] = set()
    for _ in range(150):
        listed = kubectl.run("get", "pods", "-l", selector, "-o", "name", check=False)
        left = set(listed.stdout.split())
        if listed.returncode == 0 and left == {f"pod/{name}" for name in returned}:
            break
        await asyncio.sleep(0.2)
    assert left == {f"pod/{name}" for name in returned}, "cancelled creates left sandboxes behind"
    assert len(returned) < 40, "no create was cancelled: the test shows nothing"
    await sandlot_async_client.sandboxes.terminate_many(tags={"run": run})


async def test_a_quota_refusal_is_its_own_error(
    kubeconfig: str, sandlot_delete_namespace: Callable[[str], None]
) -> None:
    namespace = unique("quota")
    try:
        async with sandlot.AsyncClient(namespace) as client:
            kubectl = Kubectl(namespace)
            kubectl.run("create", "quota", "sandboxes", "--hard=pods=1,persistentvolumeclaims=0")
            for _ in range(100):  # the quota is enforced once its usage is counted
                if kubectl.json("get", "quota", "sandboxes").get("status", {}).get("used"):
                    break
                await asyncio.sleep(0.1)
            first = await client.sandboxes.create(BUSYBOX)
            with pytest.raises(sandlot.QuotaExceededError) as refused:
                await client.sandboxes.create(BUSYBOX)
            assert not isinstance(refused.value, sandlot.PermissionDeniedError)
            assert refused.value.namespace == namespace
            name, message = refused.value.sandbox_name, str(refused.value)
            assert name and f'creating sandbox "{name}": quota exceeded in namespace "{namespace}"' in message
            with pytest.raises(sandlot.QuotaExceededError):
                await client.volumes.create(unique("v"), size="16Mi")
            from test_cli import sandlot as run_cli

            cli = run_cli(namespace, "create", BUSYBOX)
            assert cli.returncode == 1
            assert "quota exceeded" in cli.stderr and "ResourceQuota" in cli.stderr, cli.stderr
            await first.terminate()
    finally:
        sandlot_delete_namespace(namespace)
