"""gVisor for real: the local cluster installs gVisor's runsc as RuntimeClass
`gvisor` (tests/cluster/cluster.sh), and a sandbox with runtime_class="gvisor"
runs on gVisor's kernel through exec, logs, a volume, its network policy and
terminate, and the attacks of test_containment.py fail there too (making
namespaces aside, which gVisor's own kernel allows)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import sandlot
from conftest import unique
from test_containment import BUSYBOX, NODE_IP, PROBES, PYTHON


async def test_a_gvisor_sandbox_runs_on_gvisors_kernel_end_to_end(sandlot_async_client: sandlot.AsyncClient) -> None:
    client = sandlot_async_client
    volume = await client.volumes.create(unique("gvisor"), size="16Mi")
    sb = await client.sandboxes.create(
        BUSYBOX,
        runtime_class="gvisor",
        volume_mounts={"/data": volume.name},
        command=["sh", "-c", "echo started; echo kept > /data/f; sleep 600"],
    )
    status = await sb.wait("running", timeout=180)
    # gVisor has its own user namespace; the nodes' answer is for runc.
    assert status.user_namespace is False
    kernel = (await sb.exec(["dmesg"])).stdout
    assert "gVisor" in kernel, kernel
    assert (await sb.exec(["cat", "/data/f"])).stdout == "kept\n"
    seven = await sb.exec(["sh", "-c", "exit 7"])
    assert (seven.exit_code, seven.path) == (7, "agent"), "the agent runs under gVisor too"
    # Its network policy holds: the API server on the node is out of reach.
    probe = await sb.exec(["sh", "-c", f"nc -w 2 {NODE_IP} 6443 </dev/null && echo done || echo denied"], timeout=30)
    assert probe.stdout.strip() == "denied"
    # The probe can connect: from a gVisor sandbox whose network is unrestricted, it does.
    control = await client.sandboxes.create(BUSYBOX, runtime_class="gvisor", network="unrestricted")
    await control.wait("running", timeout=180)
    reached = await control.exec(["sh", "-c", f"nc -w 2 {NODE_IP} 6443 </dev/null && echo done || echo denied"])
    assert reached.stdout.strip() == "done"
    await control.terminate()
    assert (await sb.logs()).splitlines()[0] == "started"
    ended = await sb.terminate()
    assert ended.phase == sandlot.Phase.TERMINATED
    await client.sandboxes.purge([sb])
    await client.volumes.delete(volume.name)


# gVisor's own kernel lets a process make namespaces (they exist only inside
# it, so the node's kernel never sees them); every other attack fails.
ALLOWED_BY_GVISOR = {"make new namespaces (`unshare`)"}


@pytest.mark.parametrize("label", list(PROBES))
async def test_attacks_fail_under_gvisor(
    sandlot_async_client: sandlot.AsyncClient, gvisor_python: sandlot.AsyncSandbox, label: str
) -> None:
    result = await gvisor_python.exec(["sh", "-c", PROBES[label]], timeout=30)
    expected = "done" if label in ALLOWED_BY_GVISOR else "denied"
    assert result.stdout.strip() == expected, (label, result)


@pytest.fixture(scope="module")
async def gvisor_python(sandlot_async_client: sandlot.AsyncClient) -> AsyncIterator[sandlot.AsyncSandbox]:
    sb = await sandlot_async_client.sandboxes.create(PYTHON, runtime_class="gvisor")
    await sb.wait("running", timeout=180)
    yield sb
    await sb.terminate()
