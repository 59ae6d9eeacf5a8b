"""Ports: a server in a sandbox reached through sandlot's port-forward, against
`kubectl port-forward` to the same pod, side by side in one run: the time to a
first HTTP 200, and small requests per second (keep-alive and a new connection
per request)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import statistics
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import sandlot
from benchmarks.clients.base import Client
from benchmarks.cluster import KUBECTL, NAMESPACE
from benchmarks.measure import Figures, Timed
from benchmarks.scenarios.base import Scenario
from benchmarks.scenarios.pools import percentile

if TYPE_CHECKING:
    from matplotlib.axes import Axes

PYTHON = "docker.io/library/python:3.11-slim"
PORT = 8000
# An HTTP/1.1 keep-alive server on the port in argv[1] answering every GET with
# its path as the body; a backlog for many connections at once. TCP_NODELAY: the
# handler writes the head and the body apart, and with Nagle's algorithm the body
# waits for the peer's delayed ACK of the head (40 ms), which caps any keep-alive
# connection at 25 requests/s whatever the forward.
SERVER = r"""
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True
Server(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
"""
# Keep-alive: CONNECTIONS connections, KEEPALIVE_REQUESTS requests in all or
# KEEPALIVE_S seconds, whichever comes first.
CONNECTIONS = 8
KEEPALIVE_REQUESTS = 20000
KEEPALIVE_S = 20.0
# A new connection per request: NEW_CONN_REQUESTS over CONNECTIONS workers, or NEW_CONN_S seconds.
NEW_CONN_REQUESTS = 500
NEW_CONN_S = 30.0
# Rounds of each throughput measurement, sandlot and kubectl in turn (medians reported).
ROUNDS = 3
# How long one attempt, a first 200, and kubectl's "Forwarding from" may take
# (a timeout, asyncio's included, is an OSError, counted as a failed request).
REQUEST_S = 10.0
FIRST_200_S = 30.0
KUBECTL_READY_S = 30.0
FORWARDING = re.compile(rb"Forwarding from 127\.0\.0\.1:(\d+)")


class HttpError(Exception):
    """An answer that is not the 200 with the path asked for."""


async def get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, close: bool = False) -> None:
    """One GET of `path` on an open connection; raises unless it is answered 200 with `path` as the body."""
    closing = "Connection: close\r\n" if close else ""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{closing}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or status[1] != b"200":
        raise HttpError(f"answered {lines[0]!r}")
    length = next((int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:")), -1)
    body = await reader.readexactly(length) if length >= 0 else b""
    if body != path.encode():
        raise HttpError(f"body {body[:80]!r} for {path}")


async def get_new_connection(port: int, path: str) -> None:
    """One GET of `path` on a connection of its own, closed after the answer."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), REQUEST_S)
    try:
        await asyncio.wait_for(get(reader, writer, path, close=True), REQUEST_S)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def first_200(port: int, path: str) -> int:
    """Until a GET on a new connection is answered 200 (at most FIRST_200_S): the
    attempts that failed before it."""
    deadline = time.monotonic() + FIRST_200_S
    failed = 0
    while True:
        try:
            await get_new_connection(port, path)
            return failed
        except (OSError, asyncio.IncompleteReadError, HttpError):
            failed += 1
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)


async def keepalive_rps(port: int, tag: str) -> tuple[float, int]:
    """Requests answered per second over CONNECTIONS keep-alive connections (each
    request's answer checked), and the requests that failed (a connection that fails
    is opened again)."""
    deadline = time.monotonic() + KEEPALIVE_S
    sent = ok = failed = 0

    async def worker(w: int) -> None:
        nonlocal sent, ok, failed
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while sent < KEEPALIVE_REQUESTS and time.monotonic() < deadline:
                sent += 1
                try:
                    if connection is None:
                        connection = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), REQUEST_S)
                    await asyncio.wait_for(get(*connection, f"/{tag}/{w}/{sent}"), REQUEST_S)
                    ok += 1
                except (OSError, asyncio.IncompleteReadError, HttpError):
                    failed += 1
                    if connection is not None:
                        connection[1].close()
                    connection = None
                    await asyncio.sleep(0.01)
        finally:
            if connection is not None:
                connection[1].close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(CONNECTIONS)))
    return ok / (time.perf_counter() - started), failed


async def new_conn_rps(port: int, tag: str) -> tuple[float, int]:
    """Requests answered per second with a new connection for each, CONNECTIONS at a
    time, and the requests that failed."""
    deadline = time.monotonic() + NEW_CONN_S
    sent = ok = failed = 0

    async def worker(w: int) -> None:
        nonlocal sent, ok, failed
        while sent < NEW_CONN_REQUESTS and time.monotonic() < deadline:
            sent += 1
            try:
                await get_new_connection(port, f"/{tag}/{w}/{sent}")
                ok += 1
            except (OSError, asyncio.IncompleteReadError, HttpError):
                failed += 1
                await asyncio.sleep(0.01)

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(CONNECTIONS)))
    return ok / (time.perf_counter() - started), failed


class KubectlForward:
    """A `kubectl port-forward pod/NAME :PORT` process: its local port once it says
    "Forwarding from", and the lines it wrote to stderr (errors), its output drained
    so it never blocks on a full pipe."""

    def __init__(self, pod: str) -> None:
        self.pod = pod
        self.local_port = 0
        self.errors: list[str] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._drains: list[asyncio.Task[None]] = []

    async def start(self) -> KubectlForward:
        self._proc = await asyncio.create_subprocess_exec(
            KUBECTL,
            "-n",
            NAMESPACE,
            "port-forward",
            f"pod/{self.pod}",
            f":{PORT}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._drains.append(asyncio.create_task(self._collect(self._proc.stderr)))
        deadline = time.monotonic() + KUBECTL_READY_S
        while not self.local_port:
            line = await asyncio.wait_for(self._proc.stdout.readline(), max(0.0, deadline - time.monotonic()))
            if not line:
                raise RuntimeError(f"kubectl port-forward ended: {' '.join(self.errors)[-2000:]}")
            if found := FORWARDING.search(line):
                self.local_port = int(found[1])
        self._drains.append(asyncio.create_task(self._drain(self._proc.stdout)))
        return self

    async def _collect(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.errors.append(line.decode(errors="replace").strip())

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while await stream.read(65536):
            pass

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for drain in self._drains:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(drain, 5)
        self._drains = []


@contextlib.asynccontextmanager
async def kubectl_forward(pod: str) -> AsyncIterator[KubectlForward]:
    forward = KubectlForward(pod)
    try:
        yield await forward.start()
    finally:
        await forward.close()


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def port_forward(client: Client, n: int) -> Figures:
    """A Python HTTP/1.1 keep-alive server (ThreadingHTTPServer, TCP_NODELAY, each
    GET answered 200 with its path as the body) in one sandbox (python:3.11-slim,
    the default network) on port 8000, reached through sandlot's
    `sb.port_forward(8000)` and through `kubectl port-forward pod/NAME :8000` to the
    same pod, in turn, in one run. First 200: n times each, after
    `sb.wait_for_port(8000)` has returned, the time from `await fwd.start()`
    (sandlot; the forward closed again after) or from spawning kubectl (up to its
    "Forwarding from" line; the process killed after) to a first GET on a new
    connection answered 200 (`first_200_retries`: attempts before it that failed).
    Throughput through one started forward each, 3 rounds, the order turning each
    round (medians): 8 keep-alive connections sending small GETs (20,000 requests
    or 20 s), and a new connection per request, 8 at a time (500 requests or 30 s);
    every answer's status and body checked, failures counted in `errors` (and
    `fwd_failed`: connections sandlot's forward could not relay). Each new
    connection through sandlot is a port-forward websocket of its own through the
    API server; kubectl multiplexes its streams on one connection. Figures for
    kubectl end in `_kubectl`; the `_vs_kubectl` ratios are above 1 where sandlot is
    ahead (rates sandlot ÷ kubectl, times kubectl ÷ sandlot)."""

    async def run() -> Figures:
        async with sandlot.AsyncClient(NAMESPACE) as c:
            sb = await c.sandboxes.create(PYTHON, command=["python3", "-c", SERVER, str(PORT)], tags={"bench": "ports"})
            try:
                await sb.wait("running", timeout=300)
                await sb.wait_for_port(PORT, timeout=120)
                fwd = sb.port_forward(PORT)
                first: dict[str, list[float]] = {"sandlot": [], "kubectl": []}
                retries = {"sandlot": 0, "kubectl": 0}
                kubectl_errors: list[str] = []
                for i in range(n):
                    for way in ("sandlot", "kubectl") if i % 2 == 0 else ("kubectl", "sandlot"):
                        await sb.wait_for_port(PORT)
                        if way == "sandlot":
                            started = time.perf_counter()
                            await fwd.start()
                            try:
                                retries[way] += await first_200(fwd.local_port, f"/first/{i}")
                                first[way].append(time.perf_counter() - started)
                            finally:
                                fwd.close()
                        else:
                            started = time.perf_counter()
                            async with kubectl_forward(sb.name) as kf:
                                retries[way] += await first_200(kf.local_port, f"/first/{i}")
                                first[way].append(time.perf_counter() - started)
                            kubectl_errors += kf.errors

                rates: dict[str, list[float]] = {}
                errors = {"sandlot": 0, "kubectl": 0}
                async with sb.port_forward(PORT) as throughput, kubectl_forward(sb.name) as kf:
                    ports = {"sandlot": throughput.local_port, "kubectl": kf.local_port}
                    for round_ in range(ROUNDS):
                        for kind, measure in (("keepalive", keepalive_rps), ("new_conn", new_conn_rps)):
                            for way in ("sandlot", "kubectl") if round_ % 2 == 0 else ("kubectl", "sandlot"):
                                rps, failed = await measure(ports[way], f"{kind}{round_}")
                                rates.setdefault(f"rps_{kind}{'' if way == 'sandlot' else '_kubectl'}", []).append(rps)
                                errors[way] += failed
                    fwd_failed = fwd.failed + throughput.failed
                    last_error = throughput.last_error or fwd.last_error
                    connections = throughput.connections
                kubectl_errors += kf.errors
            finally:
                await sb.terminate()
        figures: Figures = {}
        for way, suffix in (("sandlot", ""), ("kubectl", "_kubectl")):
            figures[f"first_200_p50_ms{suffix}"] = ms(statistics.median(first[way]))
            figures[f"first_200_p99_ms{suffix}"] = ms(percentile(first[way], 0.99))
        for way, suffix in (("sandlot", ""), ("kubectl", "_kubectl")):
            figures[f"first_200_retries{suffix}"] = retries[way]
        for name in ("rps_keepalive", "rps_keepalive_kubectl", "rps_new_conn", "rps_new_conn_kubectl"):
            figures[name] = round(statistics.median(rates[name]), 1)
        figures["first_200_vs_kubectl"] = round(figures["first_200_p50_ms_kubectl"] / figures["first_200_p50_ms"], 2)
        for kind in ("keepalive", "new_conn"):
            figures[f"{kind}_vs_kubectl"] = round(figures[f"rps_{kind}"] / figures[f"rps_{kind}_kubectl"], 2)
        figures["errors"] = errors["sandlot"]
        figures["errors_kubectl"] = errors["kubectl"]
        figures["fwd_connections"] = connections
        figures["fwd_failed"] = fwd_failed
        figures["fwd_last_error"] = str(last_error)[:200] if last_error else "-"
        figures["kubectl_stderr_lines"] = len(kubectl_errors)
        return figures

    with Timed() as timed:
        figures = asyncio.run(run())
    return {**timed.figures(client), **figures}


def draw(ax: Axes, by_client: dict[str, dict[str, Any]]) -> None:
    """Three panels of sandlot's row: time to a first 200 (p50), keep-alive and new-connection
    requests/s, sandlot's bar (green) beside kubectl's (grey)."""
    row = by_client["sandlot"]
    from matplotlib.figure import Figure

    fig = ax.figure
    if not isinstance(fig, Figure):
        raise TypeError("the chart's axes are not a figure's own")
    ax.remove()
    fig.set_size_inches(9.6, 3.6)
    panels = (
        ("first 200, p50 (ms)", "first_200_p50_ms"),
        ("keep-alive requests/s", "rps_keepalive"),
        ("new connection requests/s", "rps_new_conn"),
    )
    for i, (title, figure) in enumerate(panels):
        panel = fig.add_subplot(1, len(panels), i + 1)
        values = [row.get(f"_{figure}") or 0, row.get(f"_{figure}_kubectl") or 0]
        panel.bar(["sandlot", "kubectl"], values, color=["#2e8b57", "#6e7781"])
        panel.set_title(title, fontsize=10)
        panel.tick_params(axis="x", labelsize=9)


SCENARIO = Scenario(
    name="port_forward",
    measure=port_forward,
    full_sizes=(50,),
    quick_sizes=(3,),
    repeats=1,
    headline="rps_keepalive",
    higher_is_better=True,
    chart_figures=("first_200_p50_ms", "rps_keepalive", "rps_new_conn"),
    clients=("sandlot",),  # kubectl port-forward runs beside it, in the same run, to the same pod
    quick_by_default=False,
    draw_chart=draw,
)
