"""The faults themselves, on the local cluster: restarting the API server
(`cluster.sh restart`), cutting it off with a firewall rule on the node address,
compacting etcd; and what the tests look at afterwards (processes in a sandbox).

Everything here talks to this machine only: 127.0.0.1 and the node address
172.30.255.1 on `lo`."""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import yaml

import sandlot
from conftest import ADMIN_KUBECONFIG, REPO, Kubectl

CLUSTER_SH = REPO / "tests" / "cluster" / "cluster.sh"
NODE_IP = "172.30.255.1"
API_PORT = 6443
ETCD = "http://127.0.0.1:2379"
FIREWALL_COMMENT = "sandlot-faults"
# In mangle, which packets pass before filter: the cluster's NetworkPolicy engine
# (kube-router) keeps its jump first in filter's INPUT and ACCEPTs there what
# policies allow from pods, ahead of any rule of ours.
IPTABLES = ["iptables", "-t", "mangle"]
FIREWALL_RULE = [
    "INPUT", "-d", NODE_IP, "-p", "tcp", "--dport", str(API_PORT),
    "-m", "comment", "--comment", FIREWALL_COMMENT, "-j", "DROP",
]  # fmt: skip
BUSYBOX = "docker.io/library/busybox:1.36"

# A sandbox command that runs while the API server answers at the node address,
# then exits with $CODE: its end falls inside the API server's absence, so the
# transition is one a client must catch up with once the server is back.
WHILE_API_ANSWERS = (
    "while printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 " + NODE_IP + f" {API_PORT} 2>/dev/null | grep -q HTTP; "
    "do sleep 2; done; exit $CODE"
)


def restart_api_server(down_seconds: int = 0) -> float:
    """Kills the API server, keeps it away `down_seconds`, starts it again and
    waits until it is ready; returns time.monotonic() when it was ready. Returns
    once the node is Ready again too, so later tests find a healthy cluster."""
    subprocess.run(
        ["bash", str(CLUSTER_SH), "restart", "kube-apiserver", str(down_seconds)],
        check=True,
        capture_output=True,
        timeout=180 + down_seconds,
    )
    ready_at = time.monotonic()
    Kubectl().run("wait", "--for=condition=Ready", "node", "--all", "--timeout=120s")
    wait_for_controllers()
    return ready_at


def wait_for_controllers(limit: float = 180) -> None:
    """Returns once the controller manager acts again: a new namespace gets its
    default service account. After the API server comes back, its watches
    resume only after their own back-off (tens of seconds after several
    restarts), and tests that make namespaces would meet that instead of sandlot."""
    probe = f"sandlot-faults-probe-{os.getpid()}-{int(time.monotonic() * 1000)}"
    Kubectl().run("create", "namespace", probe)
    try:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if Kubectl(probe).run("get", "serviceaccount", "default", check=False).returncode == 0:
                return
            time.sleep(0.5)
        raise AssertionError(f"the controller manager made no service account within {limit} s")
    finally:
        Kubectl().run("delete", "namespace", probe, "--wait=false", check=False)


def remove_firewall_rules() -> int:
    """Deletes every rule this suite added (also ones a killed run left); returns how many."""
    removed = 0
    for _ in range(20):
        if subprocess.run([*IPTABLES, "-D", *FIREWALL_RULE], capture_output=True, timeout=30).returncode != 0:
            break
        removed += 1
    return removed


@contextlib.contextmanager
def api_server_unreachable() -> Iterator[None]:
    """The API server's node address drops every packet (established connections
    hang, new ones time out) until the block ends; 127.0.0.1, which the
    cluster's own components use, stays open."""
    subprocess.run([*IPTABLES, "-I", *FIREWALL_RULE], check=True, capture_output=True, timeout=30)
    try:
        yield
    finally:
        remove_firewall_rules()


def etcd_revision() -> int:
    header = etcd_call("/v3/kv/range", {"key": "AA=="})["header"]
    assert isinstance(header, dict)
    return int(header["revision"])


def compact_etcd() -> int:
    """Compacts etcd's history up to now, so a watch resuming from any earlier
    resourceVersion is answered 410 Gone; returns the revision."""
    revision = etcd_revision()
    etcd_call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
    return revision


def etcd_call(path: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(ETCD + path, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def node_address_kubeconfig(path: Path) -> Path:
    """The admin kubeconfig, but reaching the API server at the node address
    (which the firewall fault blocks) instead of 127.0.0.1."""
    config = yaml.safe_load(Path(ADMIN_KUBECONFIG).read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://{NODE_IP}:{API_PORT}"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@contextlib.asynccontextmanager
async def client_through(kubeconfig: Path, namespace: str) -> AsyncIterator[sandlot.AsyncClient]:
    """An async client that reads `kubeconfig` (sandlot takes it from $KUBECONFIG
    when it connects), connected, closed afterwards."""
    saved = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(kubeconfig)
    try:
        client = sandlot.AsyncClient(namespace)
        await client.connect()
    finally:
        if saved is None:
            del os.environ["KUBECONFIG"]
        else:
            os.environ["KUBECONFIG"] = saved
    async with client:
        yield client


def processes_in(namespace: str, pod: str, command_line: str) -> int:
    """How many processes in the sandbox run exactly `command_line`, read with
    kubectl (not sandlot) through the admin credentials."""
    out = Kubectl(namespace).run("exec", pod, "--", "ps", "-o", "args").stdout
    return sum(1 for line in out.splitlines() if line.strip() == command_line)


def wait_for_processes(
    namespace: str, pod: str, command_line: str, want: int, seconds: float, *, at_least: bool = False
) -> int:
    """Polls until `want` (or with `at_least`, `want` or more) processes run
    `command_line`, or `seconds` pass; returns the last count."""
    deadline = time.monotonic() + seconds
    count = processes_in(namespace, pod, command_line)
    while (count < want if at_least else count != want) and time.monotonic() < deadline:
        time.sleep(0.5)
        count = processes_in(namespace, pod, command_line)
    return count


def pod_room() -> int:
    """How many more pods the node takes: its pod capacity less the pods that
    hold a place (every pod not yet ended, in any namespace)."""
    node = Kubectl().json("get", "nodes", "-l", "type!=kwok")["items"][0]
    name = node["metadata"]["name"]
    live = (
        Kubectl()
        .run(
            "get",
            "pods",
            "-A",
            "--no-headers",
            f"--field-selector=status.phase!=Succeeded,status.phase!=Failed,spec.nodeName={name}",
        )
        .stdout
    )
    return int(node["status"]["allocatable"]["pods"]) - len(live.splitlines())


def delete_tagged(namespace: str, key: str, value: str) -> None:
    """Deletes a test's sandboxes (by one of their tags) at once, whatever state its client is in."""
    Kubectl(namespace).run("delete", "pods", "-l", f"tags.sandlot.dev/{key}={value}", "--wait=false", check=False)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]
