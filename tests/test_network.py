"""Network containment, attacked from inside: sandboxes under each network
mode try to reach what a hostile sandbox would go for, and each attempt's
outcome is asserted. The local cluster enforces NetworkPolicy with a real
engine (kube-router's policy controller, tests/cluster/README.md).

Each prober sandbox runs the attempts as its command, so its very first packet
is among them: a denial that held only after a while would show as connected.
The outcome matrix is also the README's "What the defaults protect" table:
this test fails if the README says otherwise, and `SANDLOT_WRITE_MATRIX=1`
rewrites it from the run."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import sandlot
from conftest import REPO, Kubectl, check_readme_block, unique

PYTHON = "docker.io/library/python:3.11-slim"
BUSYBOX = "docker.io/library/busybox:1.36"
NODE_IP = "172.30.255.1"
API_SERVICE_IP = "10.96.0.1"
# Stand-ins the test runs on the node, on addresses it adds to `lo`: the cloud
# metadata service, and a public server (TEST-NET-2, a documentation range
# that no NetworkPolicy mode treats as private).
METADATA_IP = "169.254.169.254"
PUBLIC_IP = "198.51.100.7"
LISTENER_PORTS = (8080, 8081)
ATTEMPT_SECONDS = 2

# Connects to each (label, host, port) of argv[1] (JSON) once, in order, each
# with a timeout of argv[2] seconds, and prints {label: outcome}.
PROBE = r"""
import json, socket, sys, errno
out = {}
for label, host, port in json.loads(sys.argv[1]):
    s = socket.socket()
    s.settimeout(float(sys.argv[2]))
    try:
        s.connect((host, port))
        out[label] = "connected"
    except socket.timeout:
        out[label] = "timed out"
    except ConnectionRefusedError:
        out[label] = "refused"
    except OSError as e:
        out[label] = "unreachable" if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) else "error " + str(e)
    finally:
        s.close()
print("PROBE " + json.dumps(out), flush=True)
"""

# Accepts and closes connections on each port in argv, forever.
LISTENER = r"""
import socket, sys, threading
def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        c.close()
for port in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(port),), daemon=True).start()
threading.Event().wait()
"""


def standins(action: str) -> None:
    subprocess.run(["bash", str(REPO / "tests" / "cluster" / "cluster.sh"), "standins", action], check=True)


@pytest.fixture(scope="module")
def node_standins() -> Iterator[None]:
    """TCP servers on the node at the metadata address (port 80) and at the
    public stand-in (ports 80 and 81), each accepting and closing connections."""
    stop = threading.Event()
    servers = []
    standins("up")
    for address, port in ((METADATA_IP, 80), (PUBLIC_IP, 80), (PUBLIC_IP, 81)):
        server = socket.create_server((address, port), reuse_port=False)
        server.settimeout(0.2)
        servers.append(server)

    def serve(server: socket.socket) -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=2)
        for server in servers:
            server.close()
        standins("down")


@dataclass
class Targets:
    """What the probers attack, with the addresses found at setup."""

    namespace: str
    listener_ip: str  # an unrestricted sandbox listening on 8080 and 8081
    restricted_ip: str  # a sandbox with the default network, listening on 8080
    app_ip: str  # an application pod (not a sandbox) listening on 8080
    app_service: str  # namespace/name of a Service in front of the application pod
    app_service_ip: str
    other_service_ip: str  # a Service in front of the unrestricted listener

    def attempts(self) -> list[tuple[str, str, int]]:
        return [
            ("cloud metadata 169.254.169.254:80", METADATA_IP, 80),
            ("API server, kubernetes Service :443", API_SERVICE_IP, 443),
            ("API server, node address :6443", NODE_IP, 6443),
            ("kubelet, node address :10250", NODE_IP, 10250),
            ("another sandbox's open port", self.listener_ip, 8080),
            ("a sandbox with a restricted network (its ingress)", self.restricted_ip, 8080),
            ("an application pod in the namespace", self.app_ip, 8080),
            ("Service in the allowlist", self.app_service_ip, 80),
            ("Service not in the allowlist", self.other_service_ip, 80),
            ("public address, allowed port 198.51.100.7:80", PUBLIC_IP, 80),
            ("public address, other port 198.51.100.7:81", PUBLIC_IP, 81),
        ]


def pod_ip(namespace: str, name: str) -> str:
    return Kubectl(namespace).run("get", "pod", name, "-o", "jsonpath={.status.podIP}").stdout.strip()


def service_ip(namespace: str, name: str) -> str:
    return Kubectl(namespace).run("get", "service", name, "-o", "jsonpath={.spec.clusterIP}").stdout.strip()


@pytest.fixture(scope="module")
async def targets(sandlot_async_client: sandlot.AsyncClient, node_standins: None) -> Targets:
    client = sandlot_async_client
    namespace = client.namespace
    kubectl = Kubectl(namespace)
    # The sandboxes first: the client makes the fresh namespace the pod goes in.
    listener = await client.sandboxes.create(
        PYTHON,
        command=["python3", "-c", LISTENER, *map(str, LISTENER_PORTS)],
        network="unrestricted",
        tags={"role": "listener"},
    )
    restricted = await client.sandboxes.create(PYTHON, command=["python3", "-c", LISTENER, "8080"])
    app = unique("app")
    kubectl.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": app, "labels": {"app": app}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "app",
                            "image": PYTHON,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["python3", "-c", LISTENER, "8080"],
                        }
                    ],
                },
            }
        )
    )
    kubectl.run("create", "service", "clusterip", app, "--tcp=80:8080")
    kubectl.run("set", "selector", f"service/{app}", f"app={app}")
    other = unique("other")
    kubectl.run("create", "service", "clusterip", other, "--tcp=80:8080")
    kubectl.run("set", "selector", f"service/{other}", "tags.sandlot.dev/role=listener")
    await asyncio.gather(listener.wait("running", timeout=120), restricted.wait("running", timeout=120))
    kubectl.run("wait", "--for=condition=Ready", f"pod/{app}", "--timeout=120s")
    return Targets(
        namespace=namespace,
        listener_ip=pod_ip(namespace, listener.name),
        restricted_ip=pod_ip(namespace, restricted.name),
        app_ip=pod_ip(namespace, app),
        app_service=f"{namespace}/{app}",
        app_service_ip=service_ip(namespace, app),
        other_service_ip=service_ip(namespace, other),
    )


def probe_line(attempts: list[tuple[str, str, int]]) -> list[str]:
    return ["python3", "-c", PROBE, json.dumps(attempts), str(ATTEMPT_SECONDS)]


def outcomes_in(output: str) -> dict[str, str]:
    line = next(line for line in output.splitlines() if line.startswith("PROBE "))
    outcomes: dict[str, str] = json.loads(line.removeprefix("PROBE "))
    return outcomes


async def probe(client: sandlot.AsyncClient, attempts: list[tuple[str, str, int]], **network: Any) -> dict[str, str]:
    sb = await client.sandboxes.create(PYTHON, command=probe_line(attempts), **network)
    status = await sb.wait(["succeeded", "failed"], timeout=240)
    logs = await sb.logs()
    assert status.phase == sandlot.Phase.SUCCEEDED, (status, logs)
    return outcomes_in(logs)


def allowed(outcome: str) -> bool:
    return outcome == "connected"


MODES = ("unrestricted", "internet", "none", "allowlist")
# Which attempts each mode lets through; every other attempt must be denied.
EXPECTED_CONNECTED = {
    "unrestricted": {
        "cloud metadata 169.254.169.254:80",
        "API server, kubernetes Service :443",
        "API server, node address :6443",
        "kubelet, node address :10250",
        "another sandbox's open port",
        "an application pod in the namespace",
        "Service in the allowlist",
        "Service not in the allowlist",
        "public address, allowed port 198.51.100.7:80",
        "public address, other port 198.51.100.7:81",
    },
    "internet": {
        "public address, allowed port 198.51.100.7:80",
        "public address, other port 198.51.100.7:81",
    },
    "none": set(),
    # The Service rule follows the Service's pods on its target port, so the
    # application pod is reachable on that port directly too.
    "allowlist": {
        "Service in the allowlist",
        "an application pod in the namespace",
        "public address, allowed port 198.51.100.7:80",
    },
}


async def test_each_network_mode_reaches_exactly_what_it_allows(
    sandlot_async_client: sandlot.AsyncClient, targets: Targets
) -> None:
    attempts = targets.attempts()
    networks: dict[str, dict[str, Any]] = {
        "unrestricted": {"network": "unrestricted"},
        "internet": {},
        "none": {"network": "none"},
        "allowlist": {"allow_egress": [f"{PUBLIC_IP}/32:80", targets.app_service]},
    }
    results = dict(
        zip(
            MODES,
            await asyncio.gather(*(probe(sandlot_async_client, attempts, **networks[m]) for m in MODES)),
            strict=True,
        )
    )
    wrong = [
        f"{mode}: {label}: {results[mode][label]}"
        for mode in MODES
        for label, _, _ in attempts
        if allowed(results[mode][label]) != (label in EXPECTED_CONNECTED[mode])
    ]
    assert not wrong, "\n".join(wrong)
    check_readme_block("network-matrix", matrix(attempts, results))


def matrix(attempts: list[tuple[str, str, int]], results: dict[str, dict[str, str]]) -> str:
    header = "| a sandbox tries to reach | " + " | ".join(f"`{m}`" for m in MODES) + " |"
    rows = [header, "|---" * (len(MODES) + 1) + "|"]
    for label, _, _ in attempts:
        cells = ["connects" if allowed(results[m][label]) else "**denied**" for m in MODES]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# What a hostile workload goes for first; every restricted mode denies both.
FIRST_TARGETS = [
    ("cloud metadata 169.254.169.254:80", METADATA_IP, 80),
    ("API server, node address :6443", NODE_IP, 6443),
]


async def test_an_exec_the_moment_a_sandbox_runs_is_already_contained(
    sandlot_async_client: sandlot.AsyncClient, node_standins: None
) -> None:
    """The gate is the sandbox's entrypoint, so `running` can come before the
    policy holds: an exec sent at once must still wait for it. Each sandbox
    gets one exec, sent as soon as `running` is seen, from a client of its
    own (whose first exec into it is the one that waits)."""
    client = sandlot_async_client
    sandboxes = [await client.sandboxes.create(PYTHON) for _ in range(3)]

    async def exec_at_once(sb: sandlot.AsyncSandbox) -> dict[str, str]:
        async with sandlot.AsyncClient(client.namespace) as fresh:
            mine = await fresh.sandboxes.get(sb.name)
            await mine.wait("running", timeout=120)
            result = await mine.exec(probe_line(FIRST_TARGETS), timeout=60)
        assert result.exit_code == 0, result
        return outcomes_in(result.stdout)

    for outcomes in await asyncio.gather(*map(exec_at_once, sandboxes)):
        assert not any(map(allowed, outcomes.values())), outcomes
    control = await client.sandboxes.create(PYTHON, network="unrestricted")
    await control.wait("running", timeout=120)
    result = await control.exec(probe_line(FIRST_TARGETS[:1]), timeout=60)
    assert outcomes_in(result.stdout) == {FIRST_TARGETS[0][0]: "connected"}, "the probe can connect"


async def test_an_image_entrypoint_is_contained_from_its_first_packet(
    sandlot_async_client: sandlot.AsyncClient, node_standins: None
) -> None:
    """Arguments without a command keep the image's entrypoint, which sandlot
    cannot wrap: the gate runs as an init container instead."""
    client = sandlot_async_client
    sb = await client.sandboxes.create(PYTHON, args=probe_line(FIRST_TARGETS))
    pod = Kubectl(client.namespace).json("get", "pod", sb.name)
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["network-gate"]
    assert "command" not in pod["spec"]["containers"][0]
    status = await sb.wait(["succeeded", "failed"], timeout=240)
    logs = await sb.logs()
    assert status.phase == sandlot.Phase.SUCCEEDED, (status, logs)
    outcomes = outcomes_in(logs)
    assert set(outcomes) == {label for label, _, _ in FIRST_TARGETS}
    assert not any(map(allowed, outcomes.values())), outcomes


async def test_a_sandbox_cannot_point_the_gate_elsewhere(sandlot_async_client: sandlot.AsyncClient) -> None:
    """The gate probes the API server where the kubelet says it is; a value
    given at create would let it probe anything that refuses and start the
    workload before its policy holds."""
    for key in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        with pytest.raises(sandlot.InvalidSpecError) as caught:
            await sandlot_async_client.sandboxes.create(BUSYBOX, env={key: "1"})
        assert caught.value.field == f"env[{key!r}]".replace("'", '"')
    allowed = await sandlot_async_client.sandboxes.create(
        BUSYBOX, env={"KUBERNETES_SERVICE_HOST": "127.0.0.1"}, network="unrestricted"
    )
    assert allowed.status.network == "unrestricted"


async def test_a_command_that_cannot_run_behind_the_gate_is_a_launch_failure(
    sandlot_async_client: sandlot.AsyncClient,
) -> None:
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, command=["no-such-program", "x"])
    status = await sb.wait(["failed", "succeeded"], timeout=120)
    assert (status.phase, status.termination_reason) == (
        sandlot.Phase.FAILED,
        sandlot.TerminationReason.LAUNCH_FAILED,
    )
    assert status.message and "no-such-program" in status.message and "not found" in status.message
    assert status.exit_code is None and status.started_at is None


async def test_a_gate_program_someone_else_put_there_is_not_run(sandlot_async_client: sandlot.AsyncClient) -> None:
    """Whoever may create ConfigMaps in the namespace could make the gate's map
    first, with a program of their own that every sandbox would run."""
    client = sandlot_async_client
    kubectl = Kubectl(client.namespace)
    await client.sandboxes.create(BUSYBOX, network="none")  # the gate's map exists
    (gate,) = [
        m
        for m in kubectl.json("get", "configmaps")["items"]
        if m["metadata"]["name"].startswith("sandlot-network-gate-")
    ]
    name = gate["metadata"]["name"]
    kubectl.run("delete", "configmap", name)
    kubectl.run("create", "configmap", name, "--from-literal=gate=#!/bin/sh")
    try:
        async with sandlot.AsyncClient(client.namespace) as fresh:
            with pytest.raises(sandlot.SandlotError, match=name) as caught:
                await fresh.sandboxes.create(BUSYBOX, name=unique("tampered"))
            assert "not the network gate" in str(caught.value)
            assert not any(p["metadata"]["name"].startswith("tampered") for p in kubectl.json("get", "pods")["items"])
    finally:
        kubectl.run("delete", "configmap", name)


async def test_status_and_listing_say_the_network(sandlot_async_client: sandlot.AsyncClient) -> None:
    client = sandlot_async_client
    default = await client.sandboxes.create(BUSYBOX, tags={"net": "status"})
    listed = await client.sandboxes.create(
        BUSYBOX, tags={"net": "status"}, allow_egress=["203.0.113.0/24", "198.51.100.7:443"]
    )
    assert (default.status.network, default.status.allow_egress) == ("internet", [])
    assert (listed.status.network, listed.status.allow_egress) == (
        "allowlist",
        ["203.0.113.0/24", "198.51.100.7/32:443"],
    )
    found = {s.name: s.status.network for s in await client.sandboxes.list(tags={"net": "status"})}
    assert found == {default.name: "internet", listed.name: "allowlist"}
    policy = Kubectl(client.namespace).json("get", "networkpolicy", default.name)
    owner = policy["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Pod", default.name)
    unrestricted = await client.sandboxes.create(BUSYBOX, network="unrestricted")
    assert unrestricted.status.network == "unrestricted"
    ran = Kubectl(client.namespace).run("get", "networkpolicy", unrestricted.name, check=False)
    assert ran.returncode != 0 and "NotFound" in ran.stderr


async def test_purge_leaves_no_policy_behind(sandlot_async_client: sandlot.AsyncClient) -> None:
    client = sandlot_async_client
    sb = await client.sandboxes.create(BUSYBOX, command=["true"])
    await sb.wait("succeeded", timeout=120)
    Kubectl(client.namespace).json("get", "networkpolicy", sb.name)  # exists while the sandbox does
    assert await client.sandboxes.purge([sb]) == [sb.name]
    for _ in range(150):  # the garbage collector follows the owner reference
        if Kubectl(client.namespace).run("get", "networkpolicy", sb.name, check=False).returncode != 0:
            break
        await asyncio.sleep(0.2)
    else:
        pytest.fail("the purged sandbox's NetworkPolicy is still there after 30 s")
    # The same name again gets a policy of its own.
    again = await client.sandboxes.create(BUSYBOX, name=sb.name)
    assert (await again.wait("running", timeout=120)).network == "internet"


async def test_a_missing_allowlisted_service_fails_the_create_with_nothing_made(
    sandlot_async_client: sandlot.AsyncClient,
) -> None:
    client = sandlot_async_client
    name = unique("nosvc")
    with pytest.raises(sandlot.NotFoundError) as caught:
        await client.sandboxes.create(BUSYBOX, name=name, allow_egress=[f"{client.namespace}/no-such-service"])
    assert caught.value.kind == "service"
    assert Kubectl(client.namespace).run("get", "pod", name, check=False).returncode != 0


async def test_a_policy_that_never_holds_fails_the_sandbox_before_its_command(
    sandlot_async_client: sandlot.AsyncClient,
) -> None:
    """Allowing the API server itself leaves the gate nothing denied to observe:
    it fails the sandbox at its deadline (60 s) and the command never runs,
    which is what a cluster without a NetworkPolicy engine gets."""
    sb = await sandlot_async_client.sandboxes.create(
        BUSYBOX, command=["sh", "-c", "echo STARTED"], allow_egress=[f"{NODE_IP}/32:6443", "198.51.100.99/32"]
    )
    status = await sb.wait(["failed", "succeeded"], timeout=240)
    assert status.phase == sandlot.Phase.FAILED
    assert status.termination_reason == sandlot.TerminationReason.LAUNCH_FAILED
    assert status.message and "NetworkPolicy is not in force" in status.message
    assert status.started_at is None and status.exit_code is None


def test_the_command_line_sets_and_shows_the_network(sandlot_namespace: str) -> None:
    from test_cli import sandlot as cli

    name = unique("cli-net")
    created = cli(
        sandlot_namespace,
        "create",
        BUSYBOX,
        "--name",
        name,
        "--network",
        "allowlist",
        "--allow-egress",
        "203.0.113.0/24",
    )
    assert created.returncode == 0, created.stderr
    shown = cli(sandlot_namespace, "get", name)
    assert re.search(r"^network\s+allowlist 203\.0\.113\.0/24$", shown.stdout, re.M), shown.stdout
    assert json.loads(cli(sandlot_namespace, "get", name, "-o", "json").stdout)["network"] == "allowlist"
    refused = cli(sandlot_namespace, "create", BUSYBOX, "--allow-egress", "*.pypi.org")
    assert refused.returncode == 2 and "--allow-egress" in refused.stderr and "host name" in refused.stderr
    refused = cli(sandlot_namespace, "create", BUSYBOX, "--network", "open")
    assert refused.returncode == 2 and "--network" in refused.stderr
