"""sandlot runs with exactly the RBAC of deploy/rbac.yaml (a service-account
token, nothing more), and each rule there is needed: without it, the
operations that use it fail with PermissionDeniedError."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import subprocess
import sys
import urllib.request
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import sandlot
from conftest import RBAC, Kubectl, grant_node_reader

BUSYBOX = "docker.io/library/busybox:1.36"


def manifests() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(RBAC.read_text()) if doc]


def role_without(resource: str | None, verb: str | None) -> dict[str, Any]:
    role = copy.deepcopy(next(doc for doc in manifests() if doc["kind"] == "Role"))
    for rule in role["rules"]:
        if resource in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    role["rules"] = [rule for rule in role["rules"] if rule["verbs"]]
    return role


@pytest.fixture
async def client(
    sandlot_namespace: str, service_account_kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[sandlot.AsyncClient]:
    monkeypatch.setenv("KUBECONFIG", str(service_account_kubeconfig))
    async with sandlot.AsyncClient(sandlot_namespace) as client:
        yield client


async def test_the_main_path_with_only_the_documented_rbac(client: sandlot.AsyncClient) -> None:
    volume = await client.volumes.create(f"v-{uuid.uuid4().hex[:6]}", size="16Mi")
    sb = await client.sandboxes.create(BUSYBOX, tags={"rbac": "yes"}, volume_mounts={"/v": volume.name})
    # deploy/node-reader.yaml is bound: the nodes say they support user namespaces.
    assert sb.status.user_namespace
    await sb.wait("running", timeout=120)
    assert (await sb.exec(["sh", "-c", "echo ok | tee /v/f"])).stdout == "ok\n"
    assert await sb.logs() == ""
    assert [s.name for s in await client.sandboxes.list(tags={"rbac": "yes"})] == [sb.name]
    assert (await client.sandboxes.get(sb.name)).name == sb.name
    assert (await sb.terminate()).phase == sandlot.Phase.TERMINATED
    assert [v.name for v in await client.volumes.list()] == [volume.name]
    # Volume files start a helper pod, with the same rules (and admission policy).
    assert await volume.files.read("f") == b"ok\n"
    await volume.files.write("g", b"from the helper")
    assert sorted(e.name for e in await volume.files.list("/")) == ["f", "g"]
    await client.volumes.delete(volume.name)
    # A warm pool: made, filled, claimed from (the claim is a patch) and deleted.
    pool = await client.pools.create(f"p-{uuid.uuid4().hex[:6]}", BUSYBOX, size=1, wait=120)
    assert pool.ready == 1
    claimed = await client.sandboxes.create(pool=pool.name, env={"E": "pooled"})
    assert claimed.status.pool_fallback is None
    assert (await claimed.exec(["sh", "-c", "echo $E"])).stdout == "pooled\n"
    assert [p.name for p in await client.pools.list()] == [pool.name]
    assert await client.pools.delete(pool.name) >= 0
    await claimed.terminate()
    # Ports: waited for, forwarded, exposed and unexposed.
    server = await client.sandboxes.create(BUSYBOX, command=HTTPD)
    await server.wait("running", timeout=120)
    await server.wait_for_port(8000, timeout=60)
    async with server.port_forward(8000) as fwd:
        served = await asyncio.to_thread(lambda: urllib.request.urlopen(fwd.url + "/hostname", timeout=30).read())
        assert served.decode().strip() == server.name
    exposed = await server.expose(8000)
    assert await server.url(8000) == exposed.url
    assert await server.unexpose(8000)
    await server.terminate()
    job = await client.sandboxes.create(BUSYBOX, command=["echo", "done"])
    await job.wait("succeeded", timeout=120)
    assert [line async for line in job.stream_logs()] == ["done"]
    assert await client.sandboxes.purge([job]) == [job.name]


async def test_without_the_node_reader_sandboxes_run_without_a_user_namespace_after_one_warning(
    sandlot_namespace: str, service_account_kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(service_account_kubeconfig))
    Kubectl().run("delete", "clusterrolebinding", f"sandlot-node-reader-{sandlot_namespace}")
    try:
        async with sandlot.AsyncClient(sandlot_namespace) as client:
            with pytest.warns(sandlot.SandlotWarning, match="nodes: list"):
                first = await client.sandboxes.create(BUSYBOX, command=["true"])
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # once per client
                second = await client.sandboxes.create(BUSYBOX, command=["true"])
                # Asked for, it is sent as asked (the nodes do support it here).
                asked = await client.sandboxes.create(BUSYBOX, command=["true"], user_namespace=True)
            assert [sb.status.user_namespace for sb in (first, second, asked)] == [False, False, True]
            assert (await asked.wait("succeeded", timeout=120)).exit_code == 0
        # A warning filter that raises stops the create before anything is made.
        async with sandlot.AsyncClient(sandlot_namespace) as client:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                for _ in range(2):  # not shown, so not spent: each create stops
                    with pytest.raises(sandlot.SandlotWarning):
                        await client.sandboxes.create(BUSYBOX, name="never-made")
            with pytest.raises(sandlot.NotFoundError):
                await client.sandboxes.get("never-made")
    finally:
        grant_node_reader(sandlot_namespace)


Operation = Callable[[sandlot.AsyncClient, str], Awaitable[object]]


async def running(client: sandlot.AsyncClient) -> str:
    sb = await client.sandboxes.create(BUSYBOX)
    await sb.wait("running", timeout=120)
    return sb.name


async def ended(client: sandlot.AsyncClient) -> str:
    sb = await client.sandboxes.create(BUSYBOX, command=["true"])
    await sb.wait("succeeded", timeout=120)
    return sb.name


async def a_volume(client: sandlot.AsyncClient) -> str:
    return (await client.volumes.create(f"v-{uuid.uuid4().hex[:6]}", size="16Mi")).name


async def nothing(client: sandlot.AsyncClient) -> str:
    return f"n-{uuid.uuid4().hex[:6]}"


async def no_gate_program(client: sandlot.AsyncClient) -> str:
    """A name, with the network gate's ConfigMap gone from the namespace (the
    next restricted create makes it again)."""
    Kubectl(client.namespace).run("delete", "configmap", "-l", "app.kubernetes.io/managed-by=sandlot")
    return await nothing(client)


async def a_gate_program(client: sandlot.AsyncClient) -> str:
    """A name, with the network gate's ConfigMap made by another client."""
    await client.sandboxes.create(BUSYBOX)
    return await nothing(client)


async def a_leftover_policy(client: sandlot.AsyncClient) -> str:
    """A name whose NetworkPolicy, made by sandlot for another sandbox, is still there."""
    other = await client.sandboxes.create(BUSYBOX)
    name = await nothing(client)
    policy = json.loads(Kubectl(client.namespace).run("get", "networkpolicy", other.name, "-o", "json").stdout)
    policy["metadata"] = {k: v for k, v in policy["metadata"].items() if k in ("labels", "ownerReferences")}
    policy["metadata"]["name"] = name
    Kubectl(client.namespace).apply(json.dumps(policy))
    return name


async def a_pool(client: sandlot.AsyncClient) -> str:
    """An empty pool (no warm sandboxes to wait for)."""
    return (await client.pools.create(f"p-{uuid.uuid4().hex[:6]}", BUSYBOX, size=0)).name


async def a_service(client: sandlot.AsyncClient) -> str:
    name = await nothing(client)
    Kubectl(client.namespace).run("create", "service", "clusterip", name, "--tcp=80:8080")
    return f"{client.namespace}/{name}"


# busybox's web server, serving /etc (so GET /hostname names the sandbox).
HTTPD = ["httpd", "-f", "-p", "8000", "-h", "/etc"]


async def serving(client: sandlot.AsyncClient) -> str:
    sb = await client.sandboxes.create(BUSYBOX, command=HTTPD)
    await sb.wait("running", timeout=120)
    await sb.wait_for_port(8000, timeout=60)
    return sb.name


async def exposed(client: sandlot.AsyncClient) -> str:
    name = await serving(client)
    await (await client.sandboxes.get(name)).expose(8000)
    return name


async def forward(client: sandlot.AsyncClient, name: str) -> None:
    async with (await client.sandboxes.get(name)).port_forward(8000):
        pass


async def expose(client: sandlot.AsyncClient, name: str) -> object:
    return await (await client.sandboxes.get(name)).expose(8000)


async def url(client: sandlot.AsyncClient, name: str) -> object:
    return await (await client.sandboxes.get(name)).url(8000)


async def unexpose(client: sandlot.AsyncClient, name: str) -> object:
    return await (await client.sandboxes.get(name)).unexpose(8000)


# (resource, verb, setup run with full rights, operation that needs the rule)
CASES: list[tuple[str, str, Callable[[sandlot.AsyncClient], Awaitable[str]], Operation]] = [
    ("pods", "create", nothing, lambda c, n: c.sandboxes.create(BUSYBOX, name=n)),
    ("pods", "get", running, lambda c, n: c.sandboxes.get(n)),
    ("pods", "list", running, lambda c, n: c.sandboxes.list()),
    ("pods", "patch", running, lambda c, n: c.sandboxes.get(n)),
    ("pods", "delete", ended, lambda c, n: c.sandboxes.purge([n])),
    ("pods/log", "get", ended, lambda c, n: c.sandboxes.get(n)),
    ("pods/exec", "get", running, lambda c, n: c.sandboxes.get(n)),
    ("persistentvolumeclaims", "create", nothing, lambda c, n: c.volumes.create(n)),
    ("persistentvolumeclaims", "get", a_volume, lambda c, n: c.volumes.get(n)),
    ("persistentvolumeclaims", "list", a_volume, lambda c, n: c.volumes.list()),
    ("persistentvolumeclaims", "delete", a_volume, lambda c, n: c.volumes.delete(n)),
    ("persistentvolumeclaims", "patch", a_volume, lambda c, n: c.volumes.delete(n)),
    ("networkpolicies", "create", nothing, lambda c, n: c.sandboxes.create(BUSYBOX, name=n)),
    ("networkpolicies", "get", a_leftover_policy, lambda c, n: c.sandboxes.create(BUSYBOX, name=n)),
    ("networkpolicies", "delete", a_leftover_policy, lambda c, n: c.sandboxes.create(BUSYBOX, name=n)),
    ("configmaps", "create", no_gate_program, lambda c, n: c.sandboxes.create(BUSYBOX, name=n)),
    ("configmaps", "get", a_gate_program, lambda c, n: c.sandboxes.create(BUSYBOX, name=n)),
    ("services", "get", a_service, lambda c, n: c.sandboxes.create(BUSYBOX, allow_egress=[n])),
    ("pods/portforward", "get", serving, forward),
    ("services", "create", serving, expose),
    ("services", "list", exposed, url),
    ("services", "delete", exposed, unexpose),
    ("configmaps", "list", a_pool, lambda c, n: c.pools.list()),
    ("configmaps", "patch", a_pool, lambda c, n: c.pools.resize(n, 0)),
    ("configmaps", "delete", a_pool, lambda c, n: c.pools.delete(n)),
]


async def operate(client: sandlot.AsyncClient, resource: str, verb: str, name: str, op: Operation) -> None:
    result = await op(client, name)
    # Some rules are exercised by a call on the object the first call returned.
    if (resource, verb) == ("pods/log", "get"):
        assert isinstance(result, sandlot.AsyncSandbox)
        await result.logs()
    if (resource, verb) == ("pods", "patch"):
        assert isinstance(result, sandlot.AsyncSandbox)
        await result.terminate()
    if (resource, verb) == ("pods/exec", "get"):
        assert isinstance(result, sandlot.AsyncSandbox)
        await result.exec(["true"])


@pytest.mark.parametrize(("resource", "verb", "setup", "operation"), CASES, ids=[f"{r}-{v}" for r, v, _, _ in CASES])
async def test_each_rule_is_needed(
    sandlot_namespace: str,
    service_account_kubeconfig: Path,
    monkeypatch: pytest.MonkeyPatch,
    resource: str,
    verb: str,
    setup: Callable[[sandlot.AsyncClient], Awaitable[str]],
    operation: Operation,
) -> None:
    async with sandlot.AsyncClient(sandlot_namespace) as admin:  # the admin kubeconfig: full rights
        name = await setup(admin)
    monkeypatch.setenv("KUBECONFIG", str(service_account_kubeconfig))
    Kubectl(sandlot_namespace).apply(yaml.safe_dump(role_without(resource, verb)))
    try:
        async with sandlot.AsyncClient(sandlot_namespace) as client:
            # RBAC changes reach the API server's authorizer within moments.
            for _ in range(50):
                try:
                    await operate(client, resource, verb, name, operation)
                except sandlot.PermissionDeniedError:
                    break
                await asyncio.sleep(0.2)
            else:
                pytest.fail(f"without {verb} on {resource}, the operation still succeeded")
        if (resource, verb) == ("networkpolicies", "create"):
            # The pod was made before its policy was refused: it is gone or going.
            pod = Kubectl(sandlot_namespace).run(
                "get", "pod", name, "-o", "jsonpath={.metadata.deletionTimestamp}", check=False
            )
            assert pod.returncode != 0 or pod.stdout.strip(), "the pod outlived the refused create"
    finally:
        Kubectl(sandlot_namespace).run("apply", "-f", str(RBAC))


async def test_waiting_needs_watch(
    sandlot_namespace: str, service_account_kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with sandlot.AsyncClient(sandlot_namespace) as admin:
        name = (await admin.sandboxes.create(BUSYBOX)).name
    monkeypatch.setenv("KUBECONFIG", str(service_account_kubeconfig))
    Kubectl(sandlot_namespace).apply(yaml.safe_dump(role_without("pods", "watch")))
    try:
        await asyncio.sleep(1)
        async with sandlot.AsyncClient(sandlot_namespace) as client:
            sb = await client.sandboxes.get(name)
            with pytest.raises(sandlot.PermissionDeniedError):
                await sb.wait("succeeded", timeout=60)
    finally:
        Kubectl(sandlot_namespace).run("apply", "-f", str(RBAC))


async def test_a_refusal_names_the_namespace_and_where_it_came_from(
    service_account_kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Role reaches its own namespace only: elsewhere the refusal says which
    namespace sandlot used and why (and the command line says the same, below)."""
    monkeypatch.setenv("KUBECONFIG", str(service_account_kubeconfig))
    monkeypatch.delenv("SANDLOT_NAMESPACE", raising=False)
    async with sandlot.AsyncClient("default") as client:
        with pytest.raises(sandlot.PermissionDeniedError) as refused:
            await client.sandboxes.list()
    assert (refused.value.namespace, refused.value.namespace_source) == ("default", "argument")
    assert str(refused.value).startswith(
        'permission denied in namespace "default" (passed as the namespace argument or -n/--namespace): '
    )


def test_the_command_line_says_the_same(service_account_kubeconfig: Path) -> None:
    cli = shutil.which("sandlot", path=str(Path(sys.executable).parent)) or "sandlot"
    base = {k: v for k, v in os.environ.items() if k != "SANDLOT_NAMESPACE"}
    base["KUBECONFIG"] = str(service_account_kubeconfig)
    for args, env, source in [
        (["-n", "default"], {}, "passed as the namespace argument or -n/--namespace"),
        ([], {"SANDLOT_NAMESPACE": "default"}, "from $SANDLOT_NAMESPACE"),
    ]:
        ran = subprocess.run([cli, *args, "list"], capture_output=True, text=True, timeout=120, env={**base, **env})
        assert ran.returncode == 1, ran.stderr
        assert ran.stderr.startswith(f'error: permission denied in namespace "default" ({source}): '), ran.stderr


@pytest.mark.unit
def test_every_rule_of_the_role_is_checked() -> None:
    role = next(doc for doc in manifests() if doc["kind"] == "Role")
    granted = {(resource, verb) for rule in role["rules"] for resource in rule["resources"] for verb in rule["verbs"]}
    checked = {(resource, verb) for resource, verb, _, _ in CASES} | {("pods", "watch")}
    assert granted == checked
