"""Figures of the local cluster: memory at rest and the time from `kubectl apply`
to Running for a busybox pod (median of N). Run with `make cluster-figures`."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KUBECTL = str(REPO / ".cluster" / "bin" / "kubectl")
KUBECONFIG = str(REPO / ".cluster" / "kubeconfig")
STATE = Path(os.environ.get("SANDLOT_CLUSTER_STATE", "/var/lib/sandlot-cluster"))


def kubectl(*args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        [KUBECTL, "--kubeconfig", KUBECONFIG, *args], input=stdin, capture_output=True, text=True, check=True
    ).stdout


def cluster_rss_mib() -> float:
    """Resident memory of every cluster process: components, containerd and its shims."""
    total_kib = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (proc / "status").read_text()
        except OSError:
            continue
        if str(STATE) not in cmdline:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


def apply_to_running(namespace: str, count: int) -> list[float]:
    watch = subprocess.Popen(
        [
            KUBECTL,
            "--kubeconfig",
            KUBECONFIG,
            "-n",
            namespace,
            "get",
            "pods",
            "--watch",
            "-o",
            "json",
            "--output-watch-events",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert watch.stdout is not None
    decoder = json.JSONDecoder()
    buffer = ""
    durations = []
    try:
        for i in range(count):
            name = f"figure-{i}"
            manifest = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {"name": "main", "image": "docker.io/library/busybox:1.36", "command": ["sleep", "3600"]}
                    ],
                },
            }
            started = time.monotonic()
            kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps(manifest))
            while True:
                line = watch.stdout.readline()
                buffer += line
                try:
                    event, _ = decoder.raw_decode(buffer.strip())
                except json.JSONDecodeError:
                    continue
                buffer = ""
                pod = event["object"]
                if pod["metadata"]["name"] == name and pod.get("status", {}).get("phase") == "Running":
                    durations.append(time.monotonic() - started)
                    break
    finally:
        watch.terminate()
    return durations


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    namespace = f"figures-{uuid.uuid4().hex[:6]}"
    print(f"memory of the cluster at rest: {cluster_rss_mib():.0f} MiB RSS")
    kubectl("create", "namespace", namespace)
    kubectl("wait", "--for=create", "serviceaccount/default", "-n", namespace, "--timeout=60s")
    try:
        durations = apply_to_running(namespace, count)
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")
    print(
        f"kubectl apply -> Running, busybox, n={count}: median {statistics.median(durations):.2f}s, "
        f"min {min(durations):.2f}s, max {max(durations):.2f}s"
    )


if __name__ == "__main__":
    main()
