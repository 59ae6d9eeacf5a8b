"""The local cluster does what sandlot relies on: pods run, logs and exec work
through the API, volumes bind and are writable by non-root pods, pods reach the
API server, and a bad image fails visibly. Plain kubectl, no sandlot code."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

from conftest import REPO, Kubectl

BUSYBOX = "docker.io/library/busybox:1.36"
PYTHON = "docker.io/library/python:3.11-slim"


def wait_for(kubectl: Kubectl, what: str, condition: str, timeout: int = 90) -> None:
    kubectl.run("wait", f"--for={condition}", what, f"--timeout={timeout}s")


def pod(name: str, image: str, command: list[str], mounts: list[dict[str, str]] | None = None, **spec: Any) -> str:
    container: dict[str, Any] = {"name": "main", "image": image, "command": command}
    if mounts:
        container["volumeMounts"] = mounts
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
            **spec,
        },
    }
    return json.dumps(manifest)


def test_node_is_ready(kubeconfig: str) -> None:
    # The real node; fake ones of the scale cluster (make cluster-scale) aside.
    nodes = Kubectl().json("get", "nodes", "-l", "type!=kwok")["items"]
    assert len(nodes) == 1
    ready = [c for c in nodes[0]["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "True"
    assert nodes[0]["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.34.")


def test_busybox_pod_runs_to_completion_and_logs_read_back(kubectl_ns: Kubectl) -> None:
    kubectl_ns.apply(pod("hello", BUSYBOX, ["sh", "-c", "echo hello from busybox; echo to stderr >&2"]))
    wait_for(kubectl_ns, "pod/hello", "jsonpath={.status.phase}=Succeeded")
    logs = kubectl_ns.run("logs", "hello").stdout
    # stdout and stderr reach the log through separate pipes: their order may mix.
    assert sorted(logs.splitlines()) == ["hello from busybox", "to stderr"]


def test_failed_command_keeps_its_exit_code(kubectl_ns: Kubectl) -> None:
    kubectl_ns.apply(pod("fails", BUSYBOX, ["sh", "-c", "echo bye; exit 3"]))
    wait_for(kubectl_ns, "pod/fails", "jsonpath={.status.phase}=Failed")
    status = kubectl_ns.json("get", "pod", "fails")["status"]
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert kubectl_ns.run("logs", "fails").stdout == "bye\n"


def test_exec_returns_output_and_exact_exit_code(kubectl_ns: Kubectl) -> None:
    kubectl_ns.apply(pod("idle", BUSYBOX, ["sleep", "3600"]))
    wait_for(kubectl_ns, "pod/idle", "condition=Ready")
    proc = kubectl_ns.run("exec", "idle", "--", "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert proc.returncode == 7
    assert proc.stdout == "out\n"
    assert "err" in proc.stderr
    ok = kubectl_ns.run("exec", "idle", "--", "cat", "/etc/hostname")
    assert ok.stdout.strip() == "idle"


def test_volume_binds_and_non_root_pod_writes_to_it(kubectl_ns: Kubectl) -> None:
    kubectl_ns.apply(
        """
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
"""
    )
    kubectl_ns.apply(
        pod(
            "writer",
            BUSYBOX,
            ["sh", "-c", "id -u; echo persisted > /data/file && cat /data/file"],
            mounts=[{"name": "data", "mountPath": "/data"}],
            securityContext={"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True},
            volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        )
    )
    wait_for(kubectl_ns, "pod/writer", "jsonpath={.status.phase}=Succeeded")
    assert kubectl_ns.run("logs", "writer").stdout.split() == ["1000", "persisted"]
    claim = kubectl_ns.json("get", "pvc", "data")
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["storageClassName"] == "standard"


def test_pods_reach_the_api_server_through_its_service(kubectl_ns: Kubectl) -> None:
    script = (
        "import os, ssl, urllib.request, urllib.error\n"
        "url = 'https://%s:%s/version' % (os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT'])\n"
        "ctx = ssl.create_default_context(cafile='/var/run/secrets/kubernetes.io/serviceaccount/ca.crt')\n"
        "token = open('/var/run/secrets/kubernetes.io/serviceaccount/token').read()\n"
        "req = urllib.request.Request(url, headers={'Authorization': 'Bearer ' + token})\n"
        "print(urllib.request.urlopen(req, context=ctx, timeout=10).status)\n"
    )
    kubectl_ns.apply(pod("incluster", PYTHON, ["python3", "-c", script]))
    wait_for(kubectl_ns, "pod/incluster", "jsonpath={.status.phase}=Succeeded")
    assert kubectl_ns.run("logs", "incluster").stdout.strip() == "200"


def test_pods_cannot_reach_beyond_the_machine(kubectl_ns: Kubectl) -> None:
    # 192.0.2.0/24 is TEST-NET-1: a packet that left the machine would go nowhere
    # useful, and the node drops it before it leaves.
    script = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('192.0.2.1', 80), timeout=3)\n"
        "    print('open')\n"
        "except OSError as e:\n"
        "    print('blocked')\n"
    )
    kubectl_ns.apply(pod("egress", PYTHON, ["python3", "-c", script]))
    wait_for(kubectl_ns, "pod/egress", "jsonpath={.status.phase}=Succeeded")
    assert kubectl_ns.run("logs", "egress").stdout.strip() == "blocked"


def test_nonexistent_image_reaches_an_image_pull_error(kubectl_ns: Kubectl) -> None:
    kubectl_ns.apply(pod("noimage", "docker.io/library/no-such-image-sandlot:0.0", ["true"]))
    deadline = time.monotonic() + 90
    reason = None
    while time.monotonic() < deadline:
        statuses = kubectl_ns.json("get", "pod", "noimage")["status"].get("containerStatuses", [])
        waiting = statuses[0]["state"].get("waiting", {}) if statuses else {}
        reason = waiting.get("reason")
        if reason in ("ErrImagePull", "ImagePullBackOff"):
            break
        time.sleep(0.5)
    assert reason in ("ErrImagePull", "ImagePullBackOff")


def test_cluster_up_again_is_a_no_op(kubeconfig: str) -> None:
    if os.path.realpath(kubeconfig) != os.path.realpath(REPO / ".cluster" / "kubeconfig"):
        return  # only meaningful for the local cluster this repository runs
    status_before = subprocess.run(
        ["bash", str(REPO / "tests/cluster/cluster.sh"), "status"], capture_output=True, text=True, check=True
    ).stdout
    up = subprocess.run(
        ["bash", str(REPO / "tests/cluster/cluster.sh"), "up"], capture_output=True, text=True, check=True
    )
    assert "already running" in up.stdout
    status_after = subprocess.run(
        ["bash", str(REPO / "tests/cluster/cluster.sh"), "status"], capture_output=True, text=True, check=True
    ).stdout
    pids = [line for line in status_before.splitlines() if "pid" in line]
    assert len(pids) == 8  # containerd, etcd, the five Kubernetes components, kube-router
    assert pids == [line for line in status_after.splitlines() if "pid" in line]
