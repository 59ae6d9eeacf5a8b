"""The main path of the Python API, end to end on a real cluster: create, wait,
exec, logs, terminate, get, list, and the errors a user meets on the way."""

from __future__ import annotations

import asyncio
import datetime
import os
from pathlib import Path

import pytest

import sandlot
from conftest import Kubectl, unique

PYTHON = "docker.io/library/python:3.11-slim"
BUSYBOX = "docker.io/library/busybox:1.36"


async def test_main_path(sandlot_async_client: sandlot.AsyncClient) -> None:
    name = unique("hello")
    sb = await sandlot_async_client.sandboxes.create(PYTHON, name=name, tags={"suite": "main-path"})
    assert sb.name == name
    assert sb.phase in (sandlot.Phase.QUEUED, sandlot.Phase.CREATING)

    status = await sb.wait("running", timeout=120)
    assert status.phase == sandlot.Phase.RUNNING
    phase_name: str = status.phase  # a str enum
    assert phase_name == "running"
    assert isinstance(status.started_at, datetime.datetime)
    assert status.image == PYTHON
    assert status.tags == {"suite": "main-path"}

    result = await sb.exec(["python3", "-c", "print(6*7)"])
    assert result.stdout == "42\n"
    assert result.stderr == ""
    assert result.exit_code == 0

    running = await sandlot_async_client.sandboxes.list(phase="running")
    assert name in [s.name for s in running]
    same = await sandlot_async_client.sandboxes.get(name)
    assert same.name == name and same.phase == sandlot.Phase.RUNNING

    terminated = await sb.terminate()
    assert terminated.phase == sandlot.Phase.TERMINATED
    assert terminated.termination_reason == sandlot.TerminationReason.TERMINATED
    status = await sb.refresh()
    assert status.phase == sandlot.Phase.TERMINATED
    assert name not in [s.name for s in await sandlot_async_client.sandboxes.list(phase="running")]
    assert name in [s.name for s in await sandlot_async_client.sandboxes.list(phase="terminated")]
    assert (await sandlot_async_client.sandboxes.get(name)).phase == sandlot.Phase.TERMINATED


async def test_exec_exit_code_is_a_result(sandlot_async_client: sandlot.AsyncClient) -> None:
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, name=unique("exit"))
    await sb.wait("running", timeout=120)
    result = await sb.exec(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (result.exit_code, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert not result.ok
    shell = await sb.exec("echo $((6 * 7))")  # a string runs through /bin/sh -c
    assert shell.stdout == "42\n"
    piped = await sb.exec(["cat"], stdin="through stdin\n")
    assert piped.stdout == "through stdin\n"
    await sb.terminate()


async def test_command_failure_ends_failed_with_exit_code_and_logs(sandlot_async_client: sandlot.AsyncClient) -> None:
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, command=["sh", "-c", "echo hi; exit 3"])
    assert sb.name.startswith("sb-")  # generated
    status = await sb.wait(["succeeded", "failed"], timeout=120)
    assert status.phase == sandlot.Phase.FAILED
    with pytest.raises(sandlot.PhaseUnreachableError) as caught:
        await sb.wait("running", timeout=60)
    assert caught.value.status.phase == sandlot.Phase.FAILED
    assert status.exit_code == 3
    assert status.termination_reason == sandlot.TerminationReason.WORKLOAD_EXITED
    assert status.finished_at is not None
    assert await sb.logs() == "hi\n"


async def test_command_success_ends_succeeded(sandlot_async_client: sandlot.AsyncClient) -> None:
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, command=["echo", "done"])
    status = await sb.wait("succeeded", timeout=120)
    assert (status.phase, status.exit_code) == (sandlot.Phase.SUCCEEDED, 0)
    assert await sb.logs() == "done\n"


async def test_logs_are_readable_after_terminate(sandlot_async_client: sandlot.AsyncClient) -> None:
    sb = await sandlot_async_client.sandboxes.create(
        BUSYBOX, name=unique("logs"), command=["sh", "-c", "echo first line; echo second line >&2; exec sleep 3600"]
    )
    await sb.wait("running", timeout=120)
    # Behind the network gate the command starts once the policy holds, a
    # moment after `running`: terminate once it has written.
    for _ in range(300):
        if len((await sb.logs()).splitlines()) == 2:
            break
        await asyncio.sleep(0.1)
    await sb.terminate()
    status = await sb.refresh()
    assert status.phase == sandlot.Phase.TERMINATED
    logs = await sb.logs()
    # stdout and stderr reach the log through separate pipes: their order may mix.
    assert sorted(logs.splitlines()) == ["first line", "second line"]
    assert (await sb.logs(tail=1)).strip() in ("first line", "second line")
    with pytest.raises(sandlot.SandboxNotRunningError):
        await sb.exec(["true"])


async def test_get_of_unknown_name_raises_not_found(sandlot_async_client: sandlot.AsyncClient) -> None:
    with pytest.raises(sandlot.NotFoundError) as caught:
        await sandlot_async_client.sandboxes.get(unique("missing"))
    assert caught.value.kind == "sandbox"
    assert isinstance(caught.value, LookupError)


async def test_taken_name_raises_name_conflict_even_when_terminated(sandlot_async_client: sandlot.AsyncClient) -> None:
    name = unique("taken")
    first = await sandlot_async_client.sandboxes.create(BUSYBOX, name=name)
    with pytest.raises(sandlot.NameConflictError) as caught:
        await sandlot_async_client.sandboxes.create(BUSYBOX, name=name)
    assert caught.value.name == name
    await first.terminate()
    with pytest.raises(sandlot.NameConflictError):
        await sandlot_async_client.sandboxes.create(BUSYBOX, name=name)


@pytest.mark.unit
async def test_invalid_name_is_rejected_before_any_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A kubeconfig whose server cannot be reached: any request would fail with
    # ClusterUnreachableError, so InvalidSpecError proves nothing was sent.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    client = sandlot.AsyncClient("anywhere")
    with pytest.raises(sandlot.InvalidSpecError) as caught:
        await client.sandboxes.create(BUSYBOX, name="Bad_Name")
    assert caught.value.field == "name"
    assert isinstance(caught.value, ValueError)
    for kwargs, field in [
        ({"tags": {"team": "has space"}}, 'tags["team"]'),
        ({"resources": {"cpu": "lots"}}, "resources.cpu"),
        ({"resources": {"gpu": "1"}}, 'resources["gpu"]'),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"env": {"A=B": "x"}}, 'env["A=B"]'),
        ({"network": "open"}, "network"),
        ({"allow_egress": ["10.0.0.0/8", "*.pypi.org"]}, "allow_egress[1]"),
        ({"network": "none", "allow_egress": ["10.0.0.0/8"]}, "allow_egress"),
    ]:
        with pytest.raises(sandlot.InvalidSpecError) as caught:
            await client.sandboxes.create(BUSYBOX, **kwargs)  # type: ignore[arg-type]
        assert caught.value.field == field
    with pytest.raises(sandlot.ClusterUnreachableError):
        await client.sandboxes.get("valid-name")


async def test_namespace_is_created_when_missing(kubeconfig: str) -> None:
    namespace = unique("sandlot-fresh")
    try:
        async with sandlot.AsyncClient(namespace) as client:
            assert client.namespace == namespace
            sb = await client.sandboxes.create(BUSYBOX, command=["true"])
            assert (await sb.wait("succeeded", timeout=120)).exit_code == 0
        labels = Kubectl().json("get", "namespace", namespace)["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "sandlot"
    finally:
        Kubectl().run("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.mark.unit
def test_namespace_defaults_to_environment_then_sandlot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SANDLOT_NAMESPACE", raising=False)
    assert sandlot.AsyncClient().namespace == "sandlot"
    monkeypatch.setenv("SANDLOT_NAMESPACE", "from-env")
    assert sandlot.AsyncClient().namespace == "from-env"
    assert sandlot.AsyncClient("explicit").namespace == "explicit"


async def test_objects_have_readable_reprs(sandlot_async_client: sandlot.AsyncClient) -> None:
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, command=["true"])
    assert repr(sb).startswith(f"AsyncSandbox(name='{sb.name}', phase=")
    status = await sb.wait("succeeded", timeout=120)
    assert (
        repr(status)
        == f"SandboxStatus(name='{sb.name}', phase='succeeded', exit_code=0, termination_reason='workload_exited')"
    )
    assert repr(sandlot_async_client) == f"AsyncClient(namespace='{sandlot_async_client.namespace}')"


async def test_sandbox_pods_are_hardened(sandlot_namespace: str, sandlot_async_client: sandlot.AsyncClient) -> None:
    sandboxes = [
        await sandlot_async_client.sandboxes.create(BUSYBOX),
        await sandlot_async_client.sandboxes.create(
            BUSYBOX, command=["true"], resources={"cpu": "250m", "memory": "64Mi"}
        ),
    ]
    for sb in sandboxes:
        pod = Kubectl(sandlot_namespace).json("get", "pod", sb.name)
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        container = spec["containers"][0]
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert set(container["resources"]["limits"]) == {"cpu", "memory", "ephemeral-storage"}
        assert not any(m["mountPath"].startswith("/var/run/secrets") for m in container.get("volumeMounts", []))
    assert Kubectl(sandlot_namespace).json("get", "pod", sandboxes[1].name)["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "250m", "memory": "64Mi", "ephemeral-storage": "2Gi"},
        "requests": {"cpu": "250m", "memory": "64Mi", "ephemeral-storage": "0"},
    }
    await sandboxes[0].terminate()


@pytest.mark.unit
def test_version_is_the_crate_version() -> None:
    assert sandlot.__version__ == "0.1.0"
    assert os.path.exists(Path(sandlot.__file__).parent / "py.typed")
