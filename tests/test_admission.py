"""The cluster-side guard (deploy/admission.yaml): the API server refuses pods
from sandlot's service account that lack sandlot's hardening. Checked with a
real service-account token: sandlot's own creates pass, and a pod made by hand
with the same token and any one flaw is refused by the rule that names it."""

from __future__ import annotations

import copy
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sandlot
from conftest import KUBECTL, REPO, Kubectl, unique

BUSYBOX = "docker.io/library/busybox:1.36"
ADMISSION = REPO / "deploy" / "admission.yaml"


def hardened_pod(name: str) -> dict[str, Any]:
    """A pod with everything the guard asks for (and nothing of sandlot's)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "sandlot"}},
        "spec": {
            "automountServiceAccountToken": False,
            "restartPolicy": "Never",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "sandbox",
                    "image": BUSYBOX,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", "1"],
                    "resources": {"limits": {"cpu": "100m", "memory": "32Mi"}},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def as_service_account(kubeconfig: Path, namespace: str, pod: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), "-n", namespace, "create", "-f", "-"],
        input=json.dumps(pod),
        capture_output=True,
        text=True,
        timeout=60,
    )


def container(pod: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = pod["spec"]["containers"][0]
    return first


def escalating(pod: dict[str, Any]) -> None:
    container(pod)["securityContext"]["allowPrivilegeEscalation"] = True


def host_network(pod: dict[str, Any]) -> None:
    pod["spec"]["hostNetwork"] = True


def host_pid(pod: dict[str, Any]) -> None:
    pod["spec"]["hostPID"] = True


def host_path(pod: dict[str, Any]) -> None:
    pod["spec"]["volumes"] = [{"name": "root", "hostPath": {"path": "/"}}]
    container(pod)["volumeMounts"] = [{"name": "root", "mountPath": "/host"}]


def added_capability(pod: dict[str, Any]) -> None:
    container(pod)["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]


def kept_capabilities(pod: dict[str, Any]) -> None:
    del container(pod)["securityContext"]["capabilities"]


def token(pod: dict[str, Any]) -> None:
    del pod["spec"]["automountServiceAccountToken"]


def no_limits(pod: dict[str, Any]) -> None:
    del container(pod)["resources"]


def unconfined(pod: dict[str, Any]) -> None:
    pod["spec"]["securityContext"]["seccompProfile"] = {"type": "Unconfined"}


def unlabelled(pod: dict[str, Any]) -> None:
    pod["metadata"]["labels"] = {}


def escalating_init_container(pod: dict[str, Any]) -> None:
    init = copy.deepcopy(container(pod))
    init["name"] = "init"
    init["securityContext"]["allowPrivilegeEscalation"] = True
    pod["spec"]["initContainers"] = [init]


def shared_processes(pod: dict[str, Any]) -> None:
    pod["spec"]["shareProcessNamespace"] = True


def host_port(pod: dict[str, Any]) -> None:
    container(pod)["ports"] = [{"containerPort": 80, "hostPort": 8080}]


# (flaw, the words of the refusal). Privileged containers are refused by the
# same rule as escalating ones, but the local cluster's API server refuses them
# before admission (--allow-privileged is off), so they cannot show it here.
FLAWS = [
    (escalating, "privileged or may escalate"),
    (escalating_init_container, "privileged or may escalate"),
    (host_network, "host namespace"),
    (host_pid, "host namespace"),
    (host_path, "hostPath"),
    (added_capability, "adds capabilities"),
    (kept_capabilities, "does not drop ALL"),
    (token, "automountServiceAccountToken"),
    (no_limits, "lacks CPU and memory limits"),
    (unconfined, "seccomp"),
    (unlabelled, "managed-by"),
    (host_port, "host port"),
    (shared_processes, "process namespace"),
]


@pytest.fixture(scope="module")
def guard(service_account_kubeconfig: Path, sandlot_namespace: str) -> Iterator[Path]:
    """deploy/admission.yaml applied, and in force: a pod without limits from
    the service account is refused (policies reach the API server's admission
    within moments). Pod Security admission is lifted in the namespace, so
    that what refuses a pod here is the guard alone."""
    Kubectl().run(
        "label", "namespace", sandlot_namespace, "pod-security.kubernetes.io/enforce=privileged", "--overwrite"
    )
    Kubectl().run("apply", "-f", str(ADMISSION))
    try:
        for _ in range(100):
            pod = hardened_pod(unique("probe"))
            no_limits(pod)
            made = as_service_account(service_account_kubeconfig, sandlot_namespace, pod)
            if made.returncode != 0 and "sandlot:" in made.stderr:
                break
            Kubectl(sandlot_namespace).run("delete", "pod", pod["metadata"]["name"], "--wait=false", check=False)
            time.sleep(0.3)
        else:
            pytest.fail("the admission policy did not come into force")
        yield service_account_kubeconfig
    finally:
        Kubectl().run("delete", "-f", str(ADMISSION), "--ignore-not-found")


@pytest.mark.parametrize(("flaw", "refusal"), FLAWS, ids=[f.__name__ for f, _ in FLAWS])
def test_a_hand_made_pod_with_a_flaw_is_refused(guard: Path, sandlot_namespace: str, flaw: Any, refusal: str) -> None:
    pod = hardened_pod(unique("flawed"))
    flaw(pod)
    made = as_service_account(guard, sandlot_namespace, pod)
    assert made.returncode != 0, "admitted"
    assert "denied request" in made.stderr and refusal in made.stderr, made.stderr


def test_the_hardened_pod_itself_is_admitted(guard: Path, sandlot_namespace: str) -> None:
    """The flaws above are each the only difference from an admitted pod."""
    made = as_service_account(guard, sandlot_namespace, hardened_pod(unique("hardened")))
    assert made.returncode == 0, made.stderr


def test_an_administrator_is_not_held_to_it(guard: Path, sandlot_namespace: str) -> None:
    pod = hardened_pod(unique("admin"))
    no_limits(pod)
    Kubectl(sandlot_namespace).run("create", "--dry-run=server", "-f", "-", input=json.dumps(pod))


async def test_sandlot_s_own_sandboxes_pass(
    guard: Path, sandlot_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every shape of pod sandlot makes: the gate as entrypoint and as init
    container, no gate, a volume, a user, a read-only root, a volume's file
    helper, a pool's warm sandbox; and the patches of a claim and of
    terminate (updates) too."""
    monkeypatch.setenv("KUBECONFIG", str(guard))
    async with sandlot.AsyncClient(sandlot_namespace) as client:
        volume = await client.volumes.create(unique("v"), size="16Mi")
        shapes: list[dict[str, Any]] = [
            {},
            {"args": ["sh", "-c", "sleep 600"]},
            {"network": "unrestricted", "run_as_user": 1000},
            {"volume_mounts": {"/data": volume.name}, "read_only_root_filesystem": True},
        ]
        sandboxes = [await client.sandboxes.create(BUSYBOX, **shape) for shape in shapes]
        for sb in sandboxes:
            await sb.wait("running", timeout=120)
        assert (await sandboxes[0].exec(["echo", "ok"])).stdout == "ok\n"
        # The helper pod of volume files, read-only and writable.
        await volume.files.write("helper", b"passed")
        assert await volume.files.read("helper") == b"passed"
        # A pool's warm sandboxes, and the patch of a claim (an update).
        pool = await client.pools.create(unique("p"), BUSYBOX, size=1, wait=120)
        claimed = await client.sandboxes.create(pool=pool.name, env={"E": "1"}, ttl_seconds=600)
        assert claimed.status.pool_fallback is None
        sandboxes.append(claimed)
        await client.pools.delete(pool.name)
        for sb in sandboxes:
            assert (await sb.terminate()).phase == sandlot.Phase.TERMINATED


async def test_a_namespace_sandlot_makes_enforces_pod_security_baseline() -> None:
    """The strictest Pod Security level every default sandbox passes is
    `baseline` (`restricted` refuses images that run as root); a default
    sandbox is admitted under it, and a pod on the host's network is not."""
    namespace = unique("psa")
    try:
        async with sandlot.AsyncClient(namespace) as client:
            sb = await client.sandboxes.create(BUSYBOX, command=["echo", "admitted"])
            assert (await sb.wait(["succeeded", "failed"], timeout=120)).phase == sandlot.Phase.SUCCEEDED
        labels = Kubectl().json("get", "namespace", namespace)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
        pod = hardened_pod(unique("on-the-host"))
        host_network(pod)
        refused = Kubectl(namespace).run("create", "-f", "-", input=json.dumps(pod), check=False)
        assert refused.returncode != 0 and "PodSecurity" in refused.stderr, refused.stderr
    finally:
        Kubectl().run("delete", "namespace", namespace, "--wait=false", check=False)
