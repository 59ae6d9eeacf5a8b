"""What a hostile workload gets on the node, attacked from inside default
sandboxes on the local cluster (containerd 2 with runc, user namespaces on):
root inside is nobody on the node, a fork bomb stops at the pod's PIDs limit
with the neighbour still answering, a full disk ends only the writer, and
setuid, mount, unshare, /proc/sys, kernel modules, raw sockets, the API token
and the host's processes are out of reach.

The outcomes are also the README's "What the defaults protect" attack table:
this test fails if the README says otherwise, and `SANDLOT_WRITE_MATRIX=1`
rewrites it."""

from __future__ import annotations

import asyncio
import re
import statistics
import time
import uuid
from pathlib import Path

import pytest

import sandlot
from conftest import Kubectl, check_readme_block, unique

BUSYBOX = "docker.io/library/busybox:1.36"
PYTHON = "docker.io/library/python:3.11-slim"
NODE_IP = "172.30.255.1"
# The local kubelet's podPidsLimit (tests/cluster/cluster.sh).
POD_PIDS_LIMIT = 4096
IDS_PER_POD = 65536

# Each probe prints one word: what happened.
PROBES = {
    "mount a filesystem": "mount -t tmpfs none /mnt 2>/dev/null && echo done || echo denied",
    "make new namespaces (`unshare`)": "unshare -m -U -p -f true 2>/dev/null && echo done || echo denied",
    "write a kernel setting in /proc/sys": "(echo 1 > /proc/sys/kernel/panic) 2>/dev/null && echo done || echo denied",
    "load a kernel module": (
        "python3 -c 'import ctypes,sys; libc=ctypes.CDLL(None, use_errno=True);"
        # finit_module (x86-64) on stdin: refused for want of the right (EPERM)
        # or of the call (ENOSYS); any other answer means the kernel tried.
        ' r=libc.syscall(313, 0, b"", 0); sys.exit(1 if r < 0 and ctypes.get_errno() in (1, 38) else 0)\''
        " 2>/dev/null && echo done || echo denied"
    ),
    "open a raw socket": (
        "python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)'"
        " 2>/dev/null && echo done || echo denied"
    ),
    f"ping the node ({NODE_IP})": (
        "python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP);"
        ' s.settimeout(2); s.sendto(b"\\x08\\0\\xf7\\xff\\0\\0\\0\\0", (sys.argv[1], 0)); s.recv(64)\''
        f" {NODE_IP} 2>/dev/null && echo done || echo denied"
    ),
    "read a service-account token": "cat /var/run/secrets/kubernetes.io/serviceaccount/token >/dev/null 2>&1"
    " && echo done || echo denied",
    "see the node's processes": "ls /proc | grep -c '^[0-9]' | awk '{print ($1 > 20) ? \"done\" : \"denied\"}'",
}


def host_uid_of(marker: str) -> int:
    """The real uid, on the node, of the process whose environment holds `marker`."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                found = re.search(r"^Uid:\s+(\d+)", (entry / "status").read_text(), re.M)
                assert found, entry
                return int(found.group(1))
        except OSError:
            continue  # gone meanwhile
    raise AssertionError(f"no process on the node has {marker} in its environment")


async def uid_seen_from_the_node(client: sandlot.AsyncClient, user_namespace: bool | None) -> tuple[bool, int, str]:
    marker = f"SANDLOT_CONTAINMENT_PROBE={uuid.uuid4().hex}"
    key, value = marker.split("=")
    sb = await client.sandboxes.create(
        BUSYBOX, env={key: value}, command=["sleep", "600"], user_namespace=user_namespace
    )
    await sb.wait("running", timeout=120)
    uid_map = (await sb.exec(["cat", "/proc/self/uid_map"])).stdout.split()
    assert (await sb.exec(["id", "-u"])).stdout == "0\n"
    host_uid = host_uid_of(marker)
    status = await sb.refresh()
    await sb.terminate()
    return status.user_namespace, host_uid, " ".join(uid_map)


async def exec_round_trip(sb: sandlot.AsyncSandbox) -> float:
    start = time.monotonic()
    await sb.exec(["true"])
    return time.monotonic() - start


async def fork_bomb(client: sandlot.AsyncClient) -> tuple[int, float, float, str]:
    """Forks `sleep`s until the kernel refuses; returns how many it got, the
    neighbour's median exec round trip before the attack and while the
    attacker's process table is full, and the attack's error."""
    neighbour = await client.sandboxes.create(BUSYBOX)
    bomb = await client.sandboxes.create(BUSYBOX, resources={"memory": "1Gi"})
    await asyncio.gather(neighbour.wait("running", timeout=120), bomb.wait("running", timeout=120))
    await exec_round_trip(neighbour)
    before = statistics.median([await exec_round_trip(neighbour) for _ in range(7)])
    # Bounded (6000 forks); each sleep ends by itself. The shell stops at the
    # first fork refused; its last line is how many it got.
    script = "i=0; while [ $i -lt 6000 ]; do sleep 120 </dev/null >/dev/null 2>&1 & i=$((i+1)); echo $i; done"
    result = await bomb.exec(["sh", "-c", script], timeout=120)
    during = statistics.median([await exec_round_trip(neighbour) for _ in range(7)])
    forked = int(result.stdout.split()[-1])
    await asyncio.gather(neighbour.terminate(), bomb.terminate())
    return forked, before, during, result.stderr


async def setuid_gains_nothing(client: sandlot.AsyncClient) -> str:
    """A binary owned by uid 1234 with its setuid bit, run by root: without
    no_new_privs it would run as 1234."""
    volume = await client.volumes.create(f"setuid-{uuid.uuid4().hex[:6]}", size="16Mi")
    maker = await client.sandboxes.create(
        BUSYBOX,
        run_as_user=1234,
        volume_mounts={"/v": volume.name},
        command=["sh", "-c", "cp /bin/busybox /v/busybox && chmod 4755 /v/busybox"],
    )
    assert (await maker.wait(["succeeded", "failed"], timeout=120)).phase == sandlot.Phase.SUCCEEDED
    runner = await client.sandboxes.create(BUSYBOX, volume_mounts={"/v": volume.name})
    await runner.wait("running", timeout=120)
    mode = (await runner.exec(["stat", "-c", "%A %u", "/v/busybox"])).stdout.split()
    assert mode == ["-rwsr-xr-x", "1234"], mode
    euid = (await runner.exec(["/v/busybox", "id", "-u"])).stdout.strip()
    await runner.terminate()
    await client.sandboxes.purge([maker, runner])
    await client.volumes.delete(volume.name, force=True)
    return "denied" if euid == "0" else f"done (euid {euid})"


async def disk_filler(client: sandlot.AsyncClient) -> sandlot.SandboxStatus:
    writer = await client.sandboxes.create(
        BUSYBOX,
        command=["sh", "-c", "dd if=/dev/zero of=/big bs=1M count=64 && sleep 600"],
        resources={"disk": "32Mi"},
    )
    return await writer.wait(["succeeded", "failed"], timeout=180)


async def test_attacks_from_inside_a_default_sandbox(sandlot_async_client: sandlot.AsyncClient) -> None:
    client = sandlot_async_client
    python = await client.sandboxes.create(PYTHON)
    await python.wait("running", timeout=120)
    assert (await python.refresh()).user_namespace, "the local node supports user namespaces"
    outcomes = {
        label: (await python.exec(["sh", "-c", probe], timeout=30)).stdout.strip() for label, probe in PROBES.items()
    }
    await python.terminate()
    # The ICMP probe itself works: a sandbox with an unrestricted network and
    # no user namespace reaches the node. (In a user namespace the kernel's
    # ping_group_range is "65534 65534", so no ICMP socket opens at all.)
    control = await client.sandboxes.create(PYTHON, network="unrestricted", user_namespace=False)
    await control.wait("running", timeout=120)
    probe = PROBES[f"ping the node ({NODE_IP})"]
    assert (await control.exec(["sh", "-c", probe], timeout=30)).stdout.strip() == "done"
    await control.terminate()

    (userns_on, host_uid, uid_map), (userns_off, root_uid, root_map) = await asyncio.gather(
        uid_seen_from_the_node(client, None), uid_seen_from_the_node(client, False)
    )
    assert userns_on and not userns_off
    first_id = int(uid_map.split()[1])
    assert uid_map.split() == ["0", str(first_id), str(IDS_PER_POD)]
    assert host_uid == first_id and host_uid >= IDS_PER_POD, (host_uid, uid_map)
    assert (root_uid, root_map) == (0, "0 0 4294967295")

    disk, setuid = await asyncio.gather(disk_filler(client), setuid_gains_nothing(client))
    # Alone, so that only the attack weighs on the neighbour.
    forked, before, during, bomb_error = await fork_bomb(client)
    assert "can't fork" in bomb_error, bomb_error
    assert 100 < forked < POD_PIDS_LIMIT, forked
    # While the attacker can fork no more, the node and its neighbour can: the
    # neighbour's exec round trip stays within 2x its own median before.
    assert during <= 2 * before, (before, during)
    assert (disk.phase, disk.termination_reason) == (sandlot.Phase.FAILED, sandlot.TerminationReason.DISK_EXCEEDED)

    rows = [
        ("be root on the node (uid 0 inside)", "denied" if host_uid != 0 else "done"),
        ("fork without limit", "denied" if forked < POD_PIDS_LIMIT else "done"),
        (
            "fill the node's disk",
            "denied" if disk.termination_reason == sandlot.TerminationReason.DISK_EXCEEDED else "done",
        ),
        ("gain a uid through a setuid binary", setuid),
        *outcomes.items(),
    ]
    check_readme_block("attack-table", table(rows))
    assert all(outcome == "denied" for _, outcome in rows), rows


def table(rows: list[tuple[str, str]]) -> str:
    lines = ["| a default sandbox tries to | outcome |", "|---|---|"]
    lines += [f"| {label} | {'**denied**' if outcome == 'denied' else outcome} |" for label, outcome in rows]
    return "\n".join(lines)


async def test_user_namespace_as_asked_and_off_by_default_under_a_runtime_class(
    sandlot_async_client: sandlot.AsyncClient,
) -> None:
    client = sandlot_async_client
    runtime_class = unique("runc-class")
    Kubectl().apply(
        f"apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {{name: {runtime_class}}}\nhandler: runc\n"
    )
    try:
        on = await client.sandboxes.create(BUSYBOX, user_namespace=True, runtime_class=runtime_class)
        off = await client.sandboxes.create(BUSYBOX, user_namespace=False)
        # A runtime class picks a handler the nodes' default answer does not cover.
        classed = await client.sandboxes.create(BUSYBOX, runtime_class=runtime_class)
        assert [sb.status.user_namespace for sb in (on, off, classed)] == [True, False, False]
        for sb, first_id in [(on, None), (off, "0"), (classed, "0")]:
            await sb.wait("running", timeout=120)
            uid_map = (await sb.exec(["cat", "/proc/self/uid_map"])).stdout.split()
            assert uid_map[1] != "0" if first_id is None else uid_map[1] == first_id, (sb.name, uid_map)
        await client.sandboxes.terminate_many([on, off, classed])
    finally:
        Kubectl().run("delete", "runtimeclass", runtime_class, check=False)


def test_a_non_boolean_user_namespace_is_refused(sandlot_client: sandlot.Client) -> None:
    with pytest.raises(TypeError):
        sandlot_client.sandboxes.create(BUSYBOX, user_namespace="yes")  # type: ignore[arg-type]
