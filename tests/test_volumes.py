"""Volumes on a real cluster: create, mount at launch, data outliving sandboxes,
unique names, deletion guarded while attached, and the CLI's volume commands."""

from __future__ import annotations

import asyncio
import json

import pytest

import sandlot
from conftest import Kubectl, unique
from test_cli import sandlot as run_cli

BUSYBOX = "docker.io/library/busybox:1.36"


async def test_data_outlives_the_sandbox_that_wrote_it(sandlot_async_client: sandlot.AsyncClient) -> None:
    volume = await sandlot_async_client.volumes.create(unique("data"), size="64Mi", tags={"suite": "volumes"})
    assert volume.phase in (sandlot.VolumePhase.PENDING, sandlot.VolumePhase.READY)
    for _ in range(100):
        if (await volume.refresh()).phase == sandlot.VolumePhase.READY:
            break
        await asyncio.sleep(0.1)
    assert volume.phase == sandlot.VolumePhase.READY
    assert volume.storage_class == "standard"
    assert volume.access_mode == "ReadWriteOnce"
    assert volume.tags == {"suite": "volumes"}

    writer = await sandlot_async_client.sandboxes.create(
        BUSYBOX,
        command=["sh", "-c", "echo written by the first sandbox > /data/note"],
        volume_mounts={"/data": volume.name},
    )
    assert (await writer.wait(["succeeded", "failed"], timeout=120)).exit_code == 0
    assert writer.status.volume_mounts == {"/data": volume.name}

    reader = await sandlot_async_client.sandboxes.create(BUSYBOX, volume_mounts={"/in": f"{volume.name}:ro"})
    await reader.wait("running", timeout=120)
    assert (await reader.exec(["cat", "/in/note"])).stdout == "written by the first sandbox\n"
    assert (await reader.exec("echo more > /in/other")).exit_code != 0, "a read-only mount refuses writes"
    assert reader.status.volume_mounts == {"/in": f"{volume.name}:ro"}
    await reader.terminate()


async def test_non_root_sandbox_writes_to_its_volume(sandlot_async_client: sandlot.AsyncClient) -> None:
    volume = await sandlot_async_client.volumes.create(unique("nonroot"), size="16Mi")
    sb = await sandlot_async_client.sandboxes.create(
        BUSYBOX,
        command=["sh", "-c", "id -u && echo ok > /work/file && cat /work/file"],
        volume_mounts={"/work": volume.name},
        run_as_user=1234,
    )
    status = await sb.wait(["succeeded", "failed"], timeout=120)
    assert status.exit_code == 0, await sb.logs()
    assert await sb.logs() == "1234\nok\n"


async def test_names_are_unique_and_free_again_after_delete(sandlot_async_client: sandlot.AsyncClient) -> None:
    name = unique("once")
    first = await sandlot_async_client.volumes.create(name, size="16Mi")
    with pytest.raises(sandlot.NameConflictError) as caught:
        await sandlot_async_client.volumes.create(name)
    assert caught.value.kind == "volume"

    sb = await sandlot_async_client.sandboxes.create(
        BUSYBOX, command=["sh", "-c", "echo old > /v/file"], volume_mounts={"/v": name}
    )
    await sb.wait("succeeded", timeout=120)
    await first.delete()
    with pytest.raises(sandlot.NotFoundError):
        await sandlot_async_client.volumes.get(name)

    again = await sandlot_async_client.volumes.create(name, size="16Mi")
    assert again.name == name
    check = await sandlot_async_client.sandboxes.create(BUSYBOX, command=["ls", "-A", "/v"], volume_mounts={"/v": name})
    await check.wait("succeeded", timeout=120)
    assert await check.logs() == "", "a new volume of a reused name starts empty"


async def test_delete_while_attached_raises_volume_in_use_until_terminated(
    sandlot_async_client: sandlot.AsyncClient,
) -> None:
    volume = await sandlot_async_client.volumes.create(unique("busy"), size="16Mi")
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, volume_mounts={"/busy": volume.name})
    await sb.wait("running", timeout=120)

    listed = {v.name: v for v in await sandlot_async_client.volumes.list()}
    assert listed[volume.name].attached_to == [sb.name]
    assert (await sandlot_async_client.volumes.get(volume.name)).attached_to == [sb.name]

    with pytest.raises(sandlot.VolumeInUseError) as caught:
        await sandlot_async_client.volumes.delete(volume.name)
    assert caught.value.sandboxes == [sb.name]
    assert sb.name in str(caught.value)

    await sb.terminate()
    assert (await sandlot_async_client.volumes.get(volume.name)).attached_to == []
    await sandlot_async_client.volumes.delete(volume.name)
    assert volume.name not in [v.name for v in await sandlot_async_client.volumes.list()]
    with pytest.raises(sandlot.NotFoundError):
        await sb.refresh()  # the ended record that mounted it is purged with it


async def test_force_delete_terminates_and_purges_the_sandboxes_using_it(
    sandlot_async_client: sandlot.AsyncClient,
) -> None:
    volume = await sandlot_async_client.volumes.create(unique("forced"), size="16Mi")
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, volume_mounts={"/x": volume.name})
    await sb.wait("running", timeout=120)
    await volume.delete(force=True)
    # Kubernetes keeps a volume while any pod refers to it, so the records go too.
    with pytest.raises(sandlot.NotFoundError):
        await sb.refresh()
    with pytest.raises(sandlot.NotFoundError):
        await sandlot_async_client.volumes.get(volume.name)


async def test_mounting_a_missing_volume_is_rejected_before_the_sandbox_exists(
    sandlot_async_client: sandlot.AsyncClient, sandlot_namespace: str
) -> None:
    name = unique("with-missing")
    missing = unique("missing")
    with pytest.raises(sandlot.NotFoundError) as caught:
        await sandlot_async_client.sandboxes.create(BUSYBOX, name=name, volume_mounts={"/m": missing})
    assert (caught.value.kind, caught.value.name) == ("volume", missing)
    assert Kubectl(sandlot_namespace).run("get", "pod", name, check=False).returncode != 0, "no pod was created"


async def test_volume_input_is_validated_locally(sandlot_async_client: sandlot.AsyncClient) -> None:
    for kwargs, field in [
        ({"name": "Bad_Name"}, "name"),
        ({"name": "ok", "size": "lots"}, "size"),
        ({"name": "ok", "storage_class": "Not A Class"}, "storage_class"),
        ({"name": "ok", "access_mode": "rwx"}, "access_mode"),
    ]:
        with pytest.raises(sandlot.InvalidSpecError) as caught:
            await sandlot_async_client.volumes.create(**kwargs)  # type: ignore[arg-type]
        assert caught.value.field == field
    with pytest.raises(sandlot.InvalidSpecError) as caught:
        await sandlot_async_client.sandboxes.create(BUSYBOX, volume_mounts={"/d": "vol:rx"})
    assert caught.value.field == 'volume_mounts["/d"]'


def test_volume_commands_of_the_cli(sandlot_namespace: str) -> None:
    name = unique("cli-vol")
    created = run_cli(sandlot_namespace, "volume", "create", name, "--size", "16Mi", "--tag", "via=cli")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == name

    listed = run_cli(sandlot_namespace, "volume", "list", "--tag", "via=cli", "-o", "json")
    assert [v["name"] for v in json.loads(listed.stdout)] == [name]

    sb_name = unique("cli-mount")
    made = run_cli(sandlot_namespace, "create", BUSYBOX, "--name", sb_name, "--volume", f"{name}:/mnt/data", "--wait")
    assert made.returncode == 0, made.stderr
    inspect = json.loads(run_cli(sandlot_namespace, "volume", "inspect", name, "-o", "json").stdout)
    assert inspect["attached_to"] == [sb_name]
    assert inspect["phase"] == "ready"

    refused = run_cli(sandlot_namespace, "volume", "delete", name)
    assert refused.returncode == 1
    assert "in use" in refused.stderr and sb_name in refused.stderr

    forced = run_cli(sandlot_namespace, "volume", "delete", name, "--force")
    assert forced.returncode == 0, forced.stderr
    gone = run_cli(sandlot_namespace, "volume", "inspect", name)
    assert gone.returncode == 4 and "not found" in gone.stderr


def test_cli_rejects_a_malformed_volume_flag(sandlot_namespace: str) -> None:
    bad = run_cli(sandlot_namespace, "create", BUSYBOX, "--volume", "no-path")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: invalid --volume")


async def test_mounting_a_volume_being_deleted_fails_at_once_and_leaves_nothing(
    sandlot_async_client: sandlot.AsyncClient, sandlot_namespace: str
) -> None:
    volume = await sandlot_async_client.volumes.create(unique("going"), size="16Mi")
    holder = await sandlot_async_client.sandboxes.create(BUSYBOX, volume_mounts={"/g": volume.name})
    await holder.wait("running", timeout=120)
    kubectl = Kubectl(sandlot_namespace)
    # Deleted behind sandlot's back: Kubernetes keeps the claim, terminating, while the holder runs.
    kubectl.run("delete", "pvc", volume.name, "--wait=false")
    name = unique("late")
    with pytest.raises(sandlot.VolumeDeletingError) as caught:
        await sandlot_async_client.sandboxes.create(BUSYBOX, name=name, volume_mounts={"/g": volume.name})
    assert (caught.value.kind, caught.value.name, caught.value.sandbox_name) == ("volume", volume.name, name)
    assert "is being deleted" in str(caught.value)
    assert isinstance(caught.value, sandlot.NotFoundError)
    assert kubectl.run("get", "pod", name, check=False).returncode != 0, "no sandbox waits on it"
    await holder.terminate()


async def test_a_create_racing_a_volume_delete_never_runs_on_a_volume_being_deleted(
    sandlot_async_client: sandlot.AsyncClient, sandlot_namespace: str
) -> None:
    """A create and a delete of the volume it mounts, started together at
    spread-out offsets: either the delete is refused and the sandbox runs on
    an intact volume, or the create fails and leaves no sandbox behind."""
    kubectl = Kubectl(sandlot_namespace)
    both_succeeded = []
    for attempt in range(16):
        volume = await sandlot_async_client.volumes.create(unique("race"), size="16Mi")
        name = unique("racer")

        async def create(volume_name: str = volume.name, name: str = name, offset: float = attempt * 0.002) -> None:
            await asyncio.sleep(offset)
            await sandlot_async_client.sandboxes.create(BUSYBOX, name=name, volume_mounts={"/r": volume_name})

        created, deleted = await asyncio.gather(
            create(), sandlot_async_client.volumes.delete(volume.name, timeout=60), return_exceptions=True
        )
        if created is None and deleted is None:
            both_succeeded.append(name)
            continue
        if created is None:
            assert isinstance(deleted, sandlot.VolumeInUseError), deleted
            sb = await sandlot_async_client.sandboxes.get(name)
            assert (await sb.wait("running", timeout=120)).phase == sandlot.Phase.RUNNING
            assert (await sandlot_async_client.volumes.get(volume.name)).attached_to == [name]
            await sb.terminate()
            await sandlot_async_client.volumes.delete(volume.name, timeout=60)
        else:
            assert isinstance(created, sandlot.NotFoundError), created  # VolumeDeletingError is one
            assert deleted is None, deleted
            for _ in range(100):
                if kubectl.run("get", "pod", name, check=False).returncode != 0:
                    break
                await asyncio.sleep(0.2)
            else:
                pytest.fail(f"the failed create left sandbox {name}")
    assert both_succeeded == [], "sandboxes created on a volume that was then deleted"
