"""The application inside the cluster, end to end: deploy/example-app.yaml's pod
(examples/in_cluster_worker.py on the python stand-in with the wheel users
install), as the `sandlot` service account of deploy/rbac.yaml in a fresh
namespace, with no namespace and no kubeconfig configured: sandlot connects with
the in-cluster configuration and works in the pod's own namespace. Checked from
the application's own output (one JSON line per step).

The image is built from dist/ (make wheel) and imported into the local
cluster's containerd by `tests/cluster/cluster.sh import-app`; on another
cluster, push an image of your own and set $SANDLOT_WORKER_IMAGE."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest
import yaml

from conftest import REPO, Kubectl, grant_node_reader

APP = REPO / "deploy" / "example-app.yaml"
RBAC = REPO / "deploy" / "rbac.yaml"
MANAGED = "app.kubernetes.io/managed-by=sandlot"


def deployment() -> dict[str, Any]:
    return next(doc for doc in yaml.safe_load_all(APP.read_text()) if doc and doc["kind"] == "Deployment")


@pytest.fixture(scope="module")
def worker_image(kubeconfig: str) -> str:
    """The example application's image, built from the wheel in dist/ and
    imported into the local cluster (cached: a few seconds when unchanged)."""
    if image := os.environ.get("SANDLOT_WORKER_IMAGE"):
        return image
    wheels = sorted((REPO / "dist").glob("sandlot-*.whl"))
    if len(wheels) != 1:
        pytest.fail(f"expected one sandlot wheel in dist/, found {[w.name for w in wheels]}: run `make wheel`")
    built = subprocess.run(
        ["bash", str(REPO / "tests" / "cluster" / "cluster.sh"), "import-app", str(wheels[0])],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=600,
    )
    if built.returncode != 0:
        pytest.fail(f"building the worker image failed:\n{built.stderr}")
    return built.stdout.strip().splitlines()[-1]


def job_from_deployment(image: str) -> dict[str, Any]:
    """The Deployment's pod, unchanged but for its image and `--once`, as a Job:
    it runs one round and ends, so its log is complete and its status final."""
    template = copy.deepcopy(deployment()["spec"]["template"])
    pod = template["spec"]
    pod["restartPolicy"] = "Never"
    (container,) = pod["containers"]
    container["image"] = image
    container["imagePullPolicy"] = "IfNotPresent"
    container["args"] = ["--once"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "sandlot-worker"},
        "spec": {"backoffLimit": 0, "activeDeadlineSeconds": 420, "template": template},
    }


def run_job(kubectl: Kubectl, job: dict[str, Any], timeout: float = 450) -> tuple[bool, str]:
    kubectl.apply(yaml.safe_dump(job))
    name = job["metadata"]["name"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = kubectl.json("get", "job", name).get("status", {})
        if status.get("succeeded") or status.get("failed"):
            logs = kubectl.run("logs", f"job/{name}", check=False)
            return bool(status.get("succeeded")), logs.stdout + logs.stderr
        time.sleep(1)
    pods = kubectl.run("get", "pods", "-o", "wide", check=False).stdout
    logs = kubectl.run("logs", f"job/{name}", check=False)
    pytest.fail(f"the worker job did not finish in {timeout}s\n{pods}\n{logs.stdout}{logs.stderr}")


def test_the_example_application_runs_in_its_own_namespace_with_only_its_service_account(
    kubectl_ns: Kubectl, worker_image: str
) -> None:
    namespace = kubectl_ns.namespace
    assert namespace
    kubectl_ns.run("apply", "-f", str(RBAC))
    ungrant = grant_node_reader(namespace)  # deploy/node-reader.yaml, as deploy/README.md says
    try:
        check_the_example_application(kubectl_ns, namespace, worker_image)
    finally:
        ungrant()


def check_the_example_application(kubectl_ns: Kubectl, namespace: str, worker_image: str) -> None:
    job = job_from_deployment(worker_image)
    env = {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    assert not env & {"KUBECONFIG", "SANDLOT_NAMESPACE"}, "nothing may name a kubeconfig or a namespace"

    succeeded, output = run_job(kubectl_ns, job)
    assert succeeded, f"the worker failed:\n{output}"
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    steps = {line["step"]: line for line in lines}
    assert [line["step"] for line in lines] == [
        "connect",
        "create",
        "wait",
        "exec",
        "logs",
        "terminate",
        "volume",
        "refused",
        "done",
    ], output

    # In-cluster configuration, the pod's own namespace, named by nothing but its service account.
    assert steps["connect"] == {"step": "connect", "namespace": namespace, "namespace_source": "service_account"}
    sandbox = steps["create"]["sandbox"]
    assert steps["wait"]["phase"] == "running"
    assert steps["exec"]["exit_code"] == 3
    assert (steps["exec"]["stdout"], steps["exec"]["stderr"]) == ("computed 42\n", "a warning\n")
    assert steps["logs"]["logs"] == "worker sandbox ready\n"
    assert (steps["terminate"]["phase"], steps["terminate"]["reason"]) == ("terminated", "terminated")
    volume = steps["volume"]
    assert (volume["phase"], volume["logs"], volume["deleted"]) == ("succeeded", "kept\n", True)

    refused = steps["refused"]
    assert refused["error"] == "PermissionDeniedError", refused
    assert (refused["namespace"], refused["namespace_source"]) == ("default", "argument")
    assert 'permission denied in namespace "default" (passed as the namespace argument' in refused["message"]
    assert f"system:serviceaccount:{namespace}:sandlot" in refused["message"]

    # Seen from outside: the sandbox lives beside the application, its record kept after terminate.
    pods = kubectl_ns.json("get", "pods", "-l", MANAGED)["items"]
    assert [p["metadata"]["name"] for p in pods] == [sandbox]
    assert pods[0]["spec"].get("hostUsers") is False, "the application could read the nodes: a user namespace"
    assert pods[0]["metadata"]["annotations"], "a sandlot sandbox carries sandlot's annotations"


def test_without_the_role_the_refusal_names_the_pods_namespace_and_its_source(
    kubectl_ns: Kubectl, worker_image: str
) -> None:
    """The refusal a new user meets when the Role is missing: it says which
    namespace sandlot used and that it came from the pod's service account."""
    namespace = kubectl_ns.namespace
    service_account = next(
        doc for doc in yaml.safe_load_all(RBAC.read_text()) if doc and doc["kind"] == "ServiceAccount"
    )
    kubectl_ns.apply(yaml.safe_dump(service_account))
    job = job_from_deployment(worker_image)
    succeeded, output = run_job(kubectl_ns, job)
    assert not succeeded, output
    assert "PermissionDeniedError" in output, output
    assert (
        f'permission denied in namespace "{namespace}" (the pod\'s own namespace, from its service account)' in output
    )


@pytest.mark.unit
def test_the_example_application_is_hardened_like_a_sandbox() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == "sandlot"
    assert pod["automountServiceAccountToken"] is True  # its token is how it reaches the API
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = {e["name"] for e in container.get("env", [])}
    assert not env & {"KUBECONFIG", "SANDLOT_NAMESPACE"}


# The application of the ownership test: a client owned by its pod creates a
# sandbox, shows that ownership refuses another namespace, and waits to be deleted.
OWNER_APP = """
import asyncio, json, sandlot
async def main():
    try:
        sandlot.AsyncClient("default", owned_by_pod=True)
    except sandlot.InvalidSpecError as err:
        print(json.dumps({"step": "refused", "field": err.field, "message": str(err)}), flush=True)
    async with sandlot.AsyncClient(owned_by_pod=True) as client:
        sb = await client.sandboxes.create("docker.io/library/busybox:1.36", ttl_seconds=600)
        await sb.wait("running", timeout=120)
        print(json.dumps({"step": "created", "sandbox": sb.name}), flush=True)
        await asyncio.sleep(600)
asyncio.run(main())
"""


def test_sandboxes_owned_by_the_application_pod_go_when_it_goes(kubectl_ns: Kubectl, worker_image: str) -> None:
    kubectl_ns.run("apply", "-f", str(RBAC))
    template = copy.deepcopy(deployment()["spec"]["template"])
    (container,) = template["spec"]["containers"]
    container.update(image=worker_image, imagePullPolicy="IfNotPresent", command=["python3", "-c", OWNER_APP], args=[])
    app = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "owner-app"}, "spec": template["spec"]}
    kubectl_ns.apply(yaml.safe_dump(app))

    steps: dict[str, Any] = {}
    deadline = time.monotonic() + 240
    while "created" not in steps and time.monotonic() < deadline:
        output = kubectl_ns.run("logs", "owner-app", check=False).stdout
        steps = {line["step"]: line for line in map(json.loads, (o for o in output.splitlines() if o.startswith("{")))}
        time.sleep(1)
    assert "created" in steps, kubectl_ns.run("logs", "owner-app", check=False).stdout
    assert steps["refused"]["field"] == "owned_by_pod", steps
    assert "is not this pod's namespace" in steps["refused"]["message"]

    sandbox = steps["created"]["sandbox"]
    app_uid = kubectl_ns.json("get", "pod", "owner-app")["metadata"]["uid"]
    owners = kubectl_ns.json("get", "pod", sandbox)["metadata"]["ownerReferences"]
    assert [(o["kind"], o["name"], o["uid"]) for o in owners] == [("Pod", "owner-app", app_uid)]

    kubectl_ns.run("delete", "pod", "owner-app", "--wait=false")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if kubectl_ns.run("get", "pod", sandbox, check=False).returncode != 0:
            break
        time.sleep(1)
    else:
        pytest.fail(f"sandbox {sandbox} outlived the pod that owned it")
