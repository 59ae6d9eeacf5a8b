"""The benchmark namespace on the local cluster, the pod every client asks for, and
kubectl for the setup around the timed part of a scenario."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# The local cluster's kubectl; SANDLOT_KUBECTL names another (as for the tests).
KUBECTL = os.environ.get("SANDLOT_KUBECTL", str(REPO / ".cluster" / "bin" / "kubectl"))
NAMESPACE = "sandlot-bench"
BUSYBOX = "docker.io/library/busybox:1.36"


def pod_manifest(name: str, command: list[str] | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The pod the baselines create: the one sandlot makes (its hardening and default
    resources), so every client asks the cluster for the same work."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "sandlot", **(labels or {})}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 2,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "sandbox",
                    "image": BUSYBOX,
                    "command": command or ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"],
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "32Mi"},
                        "limits": {"cpu": "1", "memory": "512Mi"},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "privileged": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def kwok_pod_manifest(name: str, batch: str) -> dict[str, Any]:
    """The baselines' pod of the scale scenario: `pod_manifest` labelled `batch=BATCH`,
    of RuntimeClass `kwok`, so it lands on the scale cluster's fake nodes only."""
    manifest = pod_manifest(name, labels={"batch": batch})
    manifest["spec"]["runtimeClassName"] = "kwok"
    return manifest


def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[bytes]:
    """kubectl in the benchmark namespace; its output captured, its exit status not checked."""
    return subprocess.run(
        [KUBECTL, "-n", NAMESPACE, *args], input=stdin.encode() if stdin else None, capture_output=True, check=False
    )


def running_pod() -> str:
    """The name of a new pod, running once this returns."""
    name = f"bench-{uuid.uuid4().hex[:6]}"
    manifest = pod_manifest(name)
    manifest["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1", "memory": "512Mi"}}
    kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    kubectl("wait", "--for=condition=Ready", "--timeout=120s", f"pod/{name}")
    return name
