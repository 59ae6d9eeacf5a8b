"""Ports on a real cluster: a Python HTTP server in a sandbox reached through
a port-forward (async, sync and CLI, 50 connections at once), waited for, and
exposed by a Service that other pods of the namespace reach but sandboxes do
not, which goes with the sandbox's record; and each error for its case."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import sandlot
from conftest import Kubectl, unique
from test_cli import SANDLOT
from test_cli import sandlot as run_sandlot
from test_network import PYTHON

# An HTTP/1.1 server on the port in argv[1] answering every GET with
# "hello PATH from HOSTNAME"; a backlog for many connections at once.
SERVER = r"""
import http.server, socket, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("hello " + self.path + " from " + socket.gethostname()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256
Server(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
"""
PORT = 8000


def get(url: str, timeout: float = 30.0) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode()


@pytest.fixture
async def client(sandlot_namespace: str) -> AsyncIterator[sandlot.AsyncClient]:
    async with sandlot.AsyncClient(sandlot_namespace) as client:
        yield client


@pytest.fixture
async def server(client: sandlot.AsyncClient) -> AsyncIterator[sandlot.AsyncSandbox]:
    """A running sandbox (default, restricted network) whose server listens on PORT."""
    sb = await client.sandboxes.create(PYTHON, command=["python3", "-c", SERVER, str(PORT)])
    await sb.wait("running", timeout=120)
    await sb.wait_for_port(PORT, timeout=60)
    yield sb
    try:
        await sb.terminate()
    except sandlot.NotFoundError:
        pass  # purged by the test


async def test_a_forward_reaches_the_server_with_many_connections_at_once(server: sandlot.AsyncSandbox) -> None:
    async with server.port_forward(PORT) as fwd:
        assert isinstance(fwd, sandlot.AsyncPortForward)
        assert fwd.running and fwd.port == PORT and fwd.sandbox == server.name
        assert fwd.url == f"http://127.0.0.1:{fwd.local_port}"
        assert await asyncio.to_thread(get, fwd.url + "/one") == (200, f"hello /one from {server.name}")
        # 50 connections at once, each its own stream, each answered in full.
        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(lambda i: get(f"{fwd.url}/{i}"), range(50)))
        assert answers == [(200, f"hello /{i} from {server.name}") for i in range(50)]
        assert fwd.connections >= 51
        assert fwd.failed == 0 and fwd.last_error is None
        local_port = fwd.local_port
    assert not fwd.running
    # Closed: nothing listens there any more.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", local_port), timeout=5).close()
    # A forward can be started again (local_port=0: on a port the system chooses).
    await fwd.start()
    try:
        assert fwd.running
        try:
            answer = await asyncio.to_thread(get, fwd.url + "/again")
        except OSError as err:
            raise AssertionError(f"{err!r}; the forward's last error: {fwd.last_error}") from err
        assert answer[0] == 200
    finally:
        await fwd.close()


async def test_a_connection_the_sandbox_refuses_is_counted_and_said(client: sandlot.AsyncClient) -> None:
    # The server answers one request and stops listening while the forward runs.
    one_shot = SERVER.replace(").serve_forever()", ")\nserver.handle_request()\nserver.server_close()\n")
    one_shot = one_shot.replace("Server((", "server = Server((") + "import time; time.sleep(600)\n"
    sb = await client.sandboxes.create(PYTHON, command=["python3", "-c", one_shot, str(PORT)])
    await sb.wait("running", timeout=120)
    await sb.wait_for_port(PORT, timeout=60)
    async with sb.port_forward(PORT) as fwd:
        assert (await asyncio.to_thread(get, fwd.url))[0] == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and fwd.failed == 0:
            try:
                await asyncio.to_thread(get, fwd.url, 5.0)
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            await asyncio.sleep(0.2)
        assert fwd.failed >= 1
        assert fwd.last_error and "refused" in fwd.last_error, fwd.last_error
    await sb.terminate()


async def test_waiting_for_a_port_and_the_errors_of_each_case(client: sandlot.AsyncClient) -> None:
    sb = await client.sandboxes.create(PYTHON, command=["sh", "-c", f"sleep 3; exec python3 -c '{SERVER}' {PORT}"])
    await sb.wait("running", timeout=120)
    # Nothing listens yet: the forward says so before listening itself.
    fwd = sb.port_forward(PORT)
    with pytest.raises(sandlot.PortNotOpenError) as raised:
        await fwd.start()
    assert (raised.value.name, raised.value.port) == (sb.name, PORT)
    assert isinstance(raised.value, ConnectionRefusedError)
    assert not fwd.running
    with pytest.raises(sandlot.InvalidSpecError, match="not started"):
        _ = fwd.local_port
    await sb.wait_for_port(PORT, timeout=60)
    async with sb.port_forward(PORT) as fwd:
        assert (await asyncio.to_thread(get, fwd.url))[0] == 200
    # A port nobody listens on: the wait ends at its timeout.
    with pytest.raises(sandlot.TimeoutError, match="port 9 of sandbox"):
        await sb.wait_for_port(9, timeout=1)
    # Bad input is refused naming the argument, before anything is sent.
    for bad in (0, -1, 65536):
        with pytest.raises(sandlot.InvalidSpecError) as invalid:
            sb.port_forward(bad)
        assert invalid.value.field == "port"
        with pytest.raises(sandlot.InvalidSpecError, match="port"):
            await sb.wait_for_port(bad)
        with pytest.raises(sandlot.InvalidSpecError, match="port"):
            await sb.expose(bad)
    with pytest.raises(sandlot.InvalidSpecError) as invalid:
        sb.port_forward(PORT, local_port=70000)
    assert invalid.value.field == "local_port"
    with pytest.raises(sandlot.InvalidSpecError) as invalid:
        sb.port_forward(PORT, address="localhost:1")
    assert invalid.value.field == "address"
    with pytest.raises(sandlot.InvalidSpecError) as invalid:
        await sb.expose(PORT, name="9-not-a-service")
    assert invalid.value.field == "name"
    with pytest.raises(sandlot.InvalidSpecError) as invalid:
        await sb.expose(PORT, allow_from=["Not A Namespace"])
    assert invalid.value.field == "allow_from"
    # A local port in use is said plainly.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(sandlot.InvalidSpecError, match="cannot listen") as invalid:
            await sb.port_forward(PORT, local_port=taken.getsockname()[1]).start()
        assert invalid.value.field == "local_port"
    # Not running: every port call says so.
    await sb.terminate()
    with pytest.raises(sandlot.SandboxNotRunningError):
        await sb.port_forward(PORT).start()
    with pytest.raises(sandlot.SandboxNotRunningError):
        await sb.wait_for_port(PORT, timeout=5)
    with pytest.raises(sandlot.SandboxNotRunningError):
        await sb.expose(PORT)
    assert await client.sandboxes.purge([sb.name]) == [sb.name]


async def test_a_wait_ends_when_the_sandbox_ends(client: sandlot.AsyncClient) -> None:
    sb = await client.sandboxes.create(PYTHON, command=["sleep", "2"])
    await sb.wait("running", timeout=120)
    with pytest.raises(sandlot.SandboxNotRunningError):
        await sb.wait_for_port(PORT, timeout=60)


def in_pod(kubectl: Kubectl, pod: str, url: str) -> str:
    """What a GET of `url` from `pod` gives: the body, or the error's name."""
    script = (
        "import sys, urllib.request\n"
        "try:\n"
        "    print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())\n"
        "except Exception as e:\n"
        "    print('ERROR', type(e).__name__, e)\n"
    )
    return kubectl.run("exec", pod, "--", "python3", "-c", script, url).stdout.strip()


async def test_an_exposed_port_is_reached_by_pods_of_the_namespace_and_not_by_sandboxes(
    client: sandlot.AsyncClient, server: sandlot.AsyncSandbox
) -> None:
    kubectl = Kubectl(client.namespace)
    app = unique("app")
    kubectl.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": app},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {"name": "app", "image": PYTHON, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "600"]}
                    ],
                },
            }
        )
    )
    neighbour = await client.sandboxes.create(PYTHON, command=["sleep", "600"], network="unrestricted")
    try:
        kubectl.run("wait", "--for=condition=Ready", f"pod/{app}", "--timeout=120s")
        await neighbour.wait("running", timeout=120)
        # Not exposed yet: no URL, and the sandbox's pod denies all ingress.
        with pytest.raises(sandlot.NotFoundError, match="expose it first"):
            await server.url(PORT)
        exposed = await server.expose(PORT)
        assert isinstance(exposed, sandlot.ExposedPort)
        assert (exposed.sandbox, exposed.port, exposed.service) == (server.name, PORT, f"{server.name}-{PORT}")
        assert exposed.allow_from == [client.namespace]
        # The local cluster runs no DNS: the URL names the cluster IP.
        assert exposed.cluster_ip and exposed.host == exposed.cluster_ip
        assert exposed.url == f"http://{exposed.cluster_ip}:{PORT}" == await server.url(PORT)
        service = json.loads(kubectl.run("get", "service", exposed.service, "-o", "json").stdout)
        assert [o["uid"] for o in service["metadata"]["ownerReferences"]] == [
            kubectl.run("get", "pod", server.name, "-o", "jsonpath={.metadata.uid}").stdout
        ]
        # An application pod of the namespace gets through, within moments of
        # the policy; a sandbox does not, even one whose own network is open.
        for _ in range(60):
            answer = in_pod(kubectl, app, exposed.url)
            if not answer.startswith("ERROR"):
                break
            await asyncio.sleep(0.5)
        assert answer == f"hello / from {server.name}"
        probe = await neighbour.exec(
            [
                "python3",
                "-c",
                "import sys, socket; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)",
                exposed.cluster_ip,
                str(PORT),
            ]
        )
        assert probe.exit_code != 0 and ("timed out" in probe.stderr or "refused" in probe.stderr), probe.stderr
        # Exposing again returns the same Service; naming callers replaces them.
        again = await server.expose(PORT, allow_from=[f"{client.namespace}/role=caller"])
        assert (again.service, again.cluster_ip) == (exposed.service, exposed.cluster_ip)
        assert again.allow_from == [f"{client.namespace}/role=caller"]
        # Unexposed: the Service and its allowance are gone.
        assert await server.unexpose(PORT) is True
        assert await server.unexpose(PORT) is False
        assert (
            kubectl.run("get", "service,networkpolicy", "-l", f"sandlot.dev/sandbox={server.name}", "-o", "name").stdout
            == ""
        )
        # Exposed again under a name of one's own, it goes with the record.
        named = await server.expose(PORT, name="web")
        assert named.service == "web"
        await server.terminate()
        await client.sandboxes.purge([server.name])
        deadline = time.monotonic() + 60
        while kubectl.run("get", "service", "web", check=False).returncode == 0:
            assert time.monotonic() < deadline, "the Service outlived the sandbox's record"
            await asyncio.sleep(0.5)
        assert kubectl.run("get", "networkpolicy", "web.ingress", check=False).returncode != 0
    finally:
        kubectl.run("delete", "pod", app, "--wait=false", check=False)
        await neighbour.terminate()


async def test_a_service_name_someone_else_holds_is_a_conflict(
    client: sandlot.AsyncClient, server: sandlot.AsyncSandbox
) -> None:
    other = unique("other")
    Kubectl(client.namespace).run("create", "service", "clusterip", other, "--tcp=80:8080")
    with pytest.raises(sandlot.NameConflictError):
        await server.expose(PORT, name=other)
    # Nothing of the refused expose is left.
    assert Kubectl(client.namespace).run("get", "networkpolicy", f"{other}.ingress", check=False).returncode != 0


def test_the_sync_client_forwards_too(sandlot_namespace: str) -> None:
    with sandlot.Client(sandlot_namespace) as client:
        sb = client.sandboxes.create(PYTHON, command=["python3", "-c", SERVER, str(PORT)])
        try:
            sb.wait("running", timeout=120)
            sb.wait_for_port(PORT, timeout=60)
            with sb.port_forward(PORT) as fwd:
                assert isinstance(fwd, sandlot.PortForward)
                assert get(fwd.url + "/sync") == (200, f"hello /sync from {sb.name}")
            exposed = sb.expose(PORT)
            assert sb.url(PORT) == exposed.url
            assert sb.unexpose(PORT)
        finally:
            sb.terminate()


def test_the_command_line_forwards_and_exposes(sandlot_namespace: str) -> None:
    with sandlot.Client(sandlot_namespace) as client:
        sb = client.sandboxes.create(PYTHON, command=["python3", "-c", SERVER, str(PORT)])
        sb.wait("running", timeout=120)
    process = subprocess.Popen(
        [SANDLOT, "--namespace", sandlot_namespace, "port-forward", sb.name, f"0:{PORT}", "--wait", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("Forwarding from 127.0.0.1:"), line + (process.stderr.read() if process.stderr else "")
        local = line.split()[2]
        assert get(f"http://{local}/cli") == (200, f"hello /cli from {sb.name}")
    finally:
        process.terminate()
        process.wait(timeout=10)
    exposed = run_sandlot(sandlot_namespace, "expose", sb.name, str(PORT))
    assert exposed.returncode == 0, exposed.stderr
    url = exposed.stdout.strip()
    assert url.startswith("http://") and url.endswith(f":{PORT}")
    shown = json.loads(run_sandlot(sandlot_namespace, "expose", sb.name, str(PORT), "-o", "json").stdout)
    assert (shown["service"], shown["url"]) == (f"{sb.name}-{PORT}", url)
    assert run_sandlot(sandlot_namespace, "unexpose", sb.name, str(PORT)).returncode == 0
    # Bad input: a usage error naming the operand, nothing sent.
    bad = run_sandlot(sandlot_namespace, "port-forward", sb.name, "1:99999")
    assert bad.returncode == 2 and "[LOCAL:]REMOTE" in bad.stderr
    # The forward ends, saying so, when the sandbox does.
    process = subprocess.Popen(
        [SANDLOT, "--namespace", sandlot_namespace, "port-forward", sb.name, f"0:{PORT}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().startswith("Forwarding from")
    assert run_sandlot(sandlot_namespace, "terminate", sb.name).returncode == 0
    _, err = process.communicate(timeout=60)
    assert process.returncode != 0 and "not running" in err
