"""sandlot against what users would otherwise pick, side by side in one run on
the local cluster: the official `kubernetes` client (threads and `stream()`),
`kubernetes_asyncio`, and `kubectl` as a subprocess.

    python benchmarks/run.py            # every scenario, every client -> results.md, charts/
    python benchmarks/run.py --quick    # smallest sizes, one repetition (the smoke test)

Each (scenario, client, repetition) runs in a fresh worker process, so client
CPU time and peak RSS are the worker's own (kubectl's processes included).
API requests are counted at the API server from its audit log (the local
cluster audits the `sandlot-bench` namespace), not by the clients.
"""

# The baselines are written as their users write them; kubernetes_asyncio's
# annotations do not describe its raw (`_preload_content=False`) returns.
# mypy: disable-error-code="arg-type,attr-defined,no-untyped-call"

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import queue
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# The local cluster's kubectl; SANDLOT_KUBECTL names another (as for the tests).
KUBECTL = os.environ.get("SANDLOT_KUBECTL", str(REPO / ".cluster" / "bin" / "kubectl"))
AUDIT_LOG = Path(os.environ.get("SANDLOT_CLUSTER_STATE", "/var/lib/sandlot-cluster")) / "logs" / "audit.log"
NAMESPACE = "sandlot-bench"
BUSYBOX = "docker.io/library/busybox:1.36"
CLIENTS = ["sandlot", "kubernetes", "kubernetes_asyncio", "kubectl"]
MIB = 1024 * 1024
# Client-side rate limits, equalised: none of the clients throttles itself.
QPS_NOTE = "no client-side rate limit in any client (kubernetes clients have none; kubectl's is lifted)"


# --- helpers shared by the clients ------------------------------------------------


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


def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [KUBECTL, "-n", NAMESPACE, *args], input=stdin.encode() if stdin else None, capture_output=True, check=False
    )


def k8s_api() -> Any:
    from kubernetes import client, config

    config.load_kube_config()
    return client.CoreV1Api()


def k8s_exec(name: str, command: list[str]) -> tuple[bytes, int]:
    """Exec with the official client's `stream()`, collecting stdout and the exit code.

    `stream()` patches the API client it is given while it runs, so each exec
    gets a client of its own (the usual workaround when threads share one)."""
    from kubernetes import client
    from kubernetes.stream import stream

    exec_api = client.CoreV1Api(client.ApiClient())
    resp = stream(
        exec_api.connect_get_namespaced_pod_exec,
        name,
        NAMESPACE,
        command=command,
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
        binary=True,
    )
    out = bytearray()
    while resp.is_open():
        resp.update(timeout=1)
        if resp.peek_stdout():
            out += resp.read_stdout()
        if resp.peek_stderr():
            resp.read_stderr()
    resp.close()
    return bytes(out), resp.returncode if resp.returncode is not None else -1


async def k8s_asyncio_exec(name: str, command: list[str]) -> tuple[bytes, int]:
    from kubernetes_asyncio.stream import WsApiClient

    ws_api = WsApiClient()
    from kubernetes_asyncio import client as aclient

    v1 = aclient.CoreV1Api(api_client=ws_api)
    out = bytearray()
    code = -1
    ws = await v1.connect_get_namespaced_pod_exec(
        name, NAMESPACE, command=command, stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False
    )
    async with ws as stream:
        async for msg in stream:
            data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
            if data and data[0] == 1:
                out += data[1:]
            elif data and data[0] == 3:
                status = json.loads(data[1:])
                if status.get("status") == "Success":
                    code = 0
                else:
                    causes = status.get("details", {}).get("causes", [])
                    code = int(next((c["message"] for c in causes if c.get("reason") == "ExitCode"), -1))
    await ws_api.close()
    return bytes(out), code


async def k8s_asyncio_wait_running(v1: Any, name: str) -> None:
    """Watch pod `name` (a watch of its own) until it runs."""
    from kubernetes_asyncio import watch as awatch

    w = awatch.Watch()
    async for event in w.stream(
        v1.list_namespaced_pod, NAMESPACE, field_selector=f"metadata.name={name}", timeout_seconds=600
    ):
        if event["object"].status.phase == "Running":
            w.stop()


# --- measuring the client's part of a worker ---------------------------------------


class Timed:
    """Wall time, CPU seconds (the worker's own and its child processes') and the
    wall-clock window (for the audit log) of the client's part of a scenario.
    Setup and teardown (kubectl, imports) stay outside."""

    def __enter__(self) -> Timed:
        self._own = resource.getrusage(resource.RUSAGE_SELF)
        self._children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.window_start = time.time()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._started
        self.window_end = time.time()
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu = sum(
            getattr(after, f) - getattr(before, f)
            for before, after in ((self._own, own), (self._children, children))
            for f in ("ru_utime", "ru_stime")
        )

    def figures(self, client: str) -> dict[str, Any]:
        """The common figures; peak RSS is the Python process's, or for kubectl its largest process's."""
        who = resource.RUSAGE_CHILDREN if client == "kubectl" else resource.RUSAGE_SELF
        return {
            "wall_s": round(self.wall, 3),
            "cpu_s": round(self.cpu, 3),
            "peak_rss_mib": round(resource.getrusage(who).ru_maxrss / 1024, 1),
            "_window": [self.window_start, self.window_end],
        }


def import_client(client: str) -> None:
    """Imports happen before the timed part: every client pays them once per process."""
    if client == "sandlot":
        import sandlot  # noqa: F401
    elif client == "kubernetes":
        import kubernetes.stream  # noqa: F401
    elif client == "kubernetes_asyncio":
        import kubernetes_asyncio.stream
        import kubernetes_asyncio.watch  # noqa: F401


# --- scenarios: each returns its figures ---------------------------------------------


def fanout(client: str, n: int) -> dict[str, Any]:
    """Create n pods, wait until all run, one echo exec in each, terminate all. Every
    Python client runs one task per pod (create, wait, exec, delete) concurrently,
    as a fan-out of independent jobs is written; kubectl does each step for all pods."""
    batch = uuid.uuid4().hex[:6]
    names = [f"fan-{batch}-{i}" for i in range(n)]
    outputs: list[bytes] = []
    import_client(client)
    with Timed() as timed:
        if client == "sandlot":
            import sandlot

            async def run() -> None:
                async with sandlot.AsyncClient(NAMESPACE) as c:

                    async def one(nm: str) -> bytes:
                        sb = await c.sandboxes.create(BUSYBOX, name=nm)
                        await sb.wait("running", timeout=600)  # every wait shares the client's one watch
                        result = await sb.exec(["echo", nm])
                        await sb.terminate()
                        return result.stdout_bytes

                    outputs.extend(await asyncio.gather(*(one(nm) for nm in names)))

            asyncio.run(run())
        elif client == "kubernetes":
            api = k8s_api()

            def one(nm: str) -> bytes:
                api.create_namespaced_pod(NAMESPACE, pod_manifest(nm))
                while api.read_namespaced_pod(nm, NAMESPACE).status.phase != "Running":
                    time.sleep(0.5)
                out, _ = k8s_exec(nm, ["echo", nm])
                api.delete_namespaced_pod(nm, NAMESPACE, grace_period_seconds=2)
                return out

            with ThreadPoolExecutor(max_workers=min(n, 32)) as pool:
                outputs.extend(pool.map(one, names))
        elif client == "kubernetes_asyncio":
            from kubernetes_asyncio import client as aclient
            from kubernetes_asyncio import config as aconfig

            async def run_async() -> None:
                await aconfig.load_kube_config()
                async with aclient.ApiClient() as api_client:
                    v1 = aclient.CoreV1Api(api_client)

                    async def one(nm: str) -> bytes:
                        await v1.create_namespaced_pod(NAMESPACE, pod_manifest(nm))
                        await k8s_asyncio_wait_running(v1, nm)
                        out, _ = await k8s_asyncio_exec(nm, ["echo", nm])
                        await v1.delete_namespaced_pod(nm, NAMESPACE, grace_period_seconds=2)
                        return out

                    outputs.extend(await asyncio.gather(*(one(nm) for nm in names)))

            asyncio.run(run_async())
        else:
            manifests = "\n---\n".join(json.dumps(pod_manifest(nm)) for nm in names)
            kubectl("apply", "-f", "-", stdin=manifests)
            kubectl("wait", "--for=jsonpath={.status.phase}=Running", "--timeout=600s", *[f"pod/{nm}" for nm in names])
            with ThreadPoolExecutor(max_workers=min(n, 16)) as pool:
                outputs.extend(pool.map(lambda nm: kubectl("exec", nm, "--", "echo", nm).stdout, names))
            kubectl("delete", "pod", "--wait=false", "--grace-period=2", *names)
    correct = sum(out == f"{nm}\n".encode() for nm, out in zip(names, outputs, strict=False))
    return {**timed.figures(client), "correct": f"{correct}/{n}"}


def waiting(client: str, n: int) -> dict[str, Any]:
    """Wait for n pods, created at once beforehand, to run. Each pod makes one phase
    change (Pending to Running) while the client waits; open watches are sampled
    by the runner."""
    batch = uuid.uuid4().hex[:6]
    names = [f"wait-{batch}-{i}" for i in range(n)]
    manifests = "\n---\n".join(json.dumps(pod_manifest(nm, labels={"batch": batch})) for nm in names)
    import_client(client)
    kubectl("apply", "-f", "-", stdin=manifests)
    with Timed() as timed:
        if client == "sandlot":
            import sandlot

            async def run() -> None:
                async with sandlot.AsyncClient(NAMESPACE) as c:
                    await c.sandboxes.wait_all(names, "running", timeout=600)

            asyncio.run(run())
        elif client == "kubernetes":
            api = k8s_api()

            def one(nm: str) -> None:
                while api.read_namespaced_pod(nm, NAMESPACE).status.phase != "Running":
                    time.sleep(1)

            with ThreadPoolExecutor(max_workers=32) as pool:
                list(pool.map(one, names))
        elif client == "kubernetes_asyncio":
            from kubernetes_asyncio import client as aclient
            from kubernetes_asyncio import config as aconfig

            async def run_async() -> None:
                await aconfig.load_kube_config()
                async with aclient.ApiClient() as api_client:
                    v1 = aclient.CoreV1Api(api_client)

                    await asyncio.gather(*(k8s_asyncio_wait_running(v1, nm) for nm in names))

            asyncio.run(run_async())
        else:
            kubectl("wait", "--for=jsonpath={.status.phase}=Running", "--timeout=600s", "pod", "-l", f"batch={batch}")
    kubectl("delete", "pod", "-l", f"batch={batch}", "--wait=false", "--grace-period=1")
    figures = timed.figures(client)
    return {**figures, "cpu_ms_per_1000_changes": round(figures["cpu_s"] * 1e6 / n)}


def running_pod() -> str:
    name = f"bench-{uuid.uuid4().hex[:6]}"
    manifest = pod_manifest(name)
    manifest["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1", "memory": "512Mi"}}
    kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    kubectl("wait", "--for=condition=Ready", "--timeout=120s", f"pod/{name}")
    return name


def exec_latency(client: str, n: int) -> dict[str, Any]:
    """n sequential `true` execs into one running pod. The server's own time per exec
    (API server audit: request received to response complete) is the floor no client
    can go under."""
    name = running_pod()
    times: list[float] = []
    import_client(client)
    with Timed() as timed:
        if client == "sandlot":
            import sandlot

            async def run() -> None:
                async with sandlot.AsyncClient(NAMESPACE) as c:
                    sb = await c.sandboxes.get(name)  # the pod carries sandlot's labels: adopt it
                    for _ in range(n):
                        t = time.perf_counter()
                        await sb.exec(["true"])
                        times.append(time.perf_counter() - t)

            asyncio.run(run())
        elif client == "kubernetes":
            k8s_api()  # loads the kubeconfig that k8s_exec's clients use
            for _ in range(n):
                t = time.perf_counter()
                k8s_exec(name, ["true"])
                times.append(time.perf_counter() - t)
        elif client == "kubernetes_asyncio":
            from kubernetes_asyncio import config as aconfig

            async def run_async() -> None:
                await aconfig.load_kube_config()
                for _ in range(n):
                    t = time.perf_counter()
                    await k8s_asyncio_exec(name, ["true"])
                    times.append(time.perf_counter() - t)

            asyncio.run(run_async())
        else:
            for _ in range(n):
                t = time.perf_counter()
                kubectl("exec", name, "--", "true")
                times.append(time.perf_counter() - t)
    kubectl("delete", "pod", name, "--wait=false", "--grace-period=1")
    qs = statistics.quantiles(times, n=100)
    result = {
        **timed.figures(client),
        "p50_ms": round(qs[49] * 1000, 1),
        "p90_ms": round(qs[89] * 1000, 1),
        "p99_ms": round(qs[98] * 1000, 1),
    }
    if client == "kubectl":
        # kubectl's exec without its process start: less a run that only starts up.
        starts = []
        for _ in range(10):
            t = time.perf_counter()
            subprocess.run([KUBECTL, "version", "--client"], capture_output=True, check=False)
            starts.append(time.perf_counter() - t)
        result["p50_without_start_ms"] = round((qs[49] - statistics.median(starts)) * 1000, 1)
    return result


def exec_throughput(client: str, mib: int) -> dict[str, Any]:
    """`mib` MiB of random bytes from stdout, checked by sha256."""
    name = running_pod()
    kubectl("exec", name, "--", "sh", "-c", f"head -c {mib * MIB} /dev/urandom > /tmp/blob")
    expected = kubectl("exec", name, "--", "sha256sum", "/tmp/blob").stdout.split()[0].decode()
    received: list[bytes] = []  # kept out of asyncio.run's return: it reprs its result, costly at 100 MiB
    import_client(client)
    with Timed() as timed:
        if client == "sandlot":
            import sandlot

            async def run() -> None:
                async with sandlot.AsyncClient(NAMESPACE) as c:
                    sb = await c.sandboxes.get(name)
                    received.append((await sb.exec(["cat", "/tmp/blob"])).stdout_bytes)

            asyncio.run(run())
        elif client == "kubernetes":
            k8s_api()  # loads the kubeconfig that k8s_exec's client uses
            received.append(k8s_exec(name, ["cat", "/tmp/blob"])[0])
        elif client == "kubernetes_asyncio":
            from kubernetes_asyncio import config as aconfig

            async def run_async() -> None:
                await aconfig.load_kube_config()
                received.append((await k8s_asyncio_exec(name, ["cat", "/tmp/blob"]))[0])

            asyncio.run(run_async())
        else:
            received.append(kubectl("exec", name, "--", "cat", "/tmp/blob").stdout)
    kubectl("delete", "pod", name, "--wait=false", "--grace-period=1")
    data = received[0]
    intact = hashlib.sha256(data).hexdigest() == expected
    figures = timed.figures(client)
    return {
        **figures,
        # A client that loses data is reported as such, not timed.
        "mb_per_s": round(len(data) / MIB / timed.wall, 1) if intact else None,
        "intact": intact,
        "bytes": len(data),
    }


def log_follow(client: str, lines: int) -> dict[str, Any]:
    """A pod printing `lines` lines as fast as it can, followed to its end; the rate is
    lines delivered to Python between the first line and the last."""
    name = f"logs-{uuid.uuid4().hex[:6]}"
    # The pause at the end: containerd 1.6 can lose the tail of a burst written just
    # before the container exits, which no client could then deliver.
    command = ["sh", "-c", f"sleep 2; seq 1 {lines}; sleep 2"]
    received: list[str] = []
    arrivals = [0.0, 0.0]  # when the first and the latest line arrived

    def got(line: str) -> None:
        now = time.perf_counter()
        if not received:
            arrivals[0] = now
        received.append(line)
        arrivals[1] = now

    kubectl("apply", "-f", "-", stdin=json.dumps(pod_manifest(name, command=command)))
    kubectl("wait", "--for=jsonpath={.status.phase}=Running", "--timeout=120s", f"pod/{name}")
    import_client(client)
    with Timed() as timed:
        if client == "sandlot":
            import sandlot

            async def run() -> None:
                async with sandlot.AsyncClient(NAMESPACE) as c:
                    sb = await c.sandboxes.get(name)
                    async for line in sb.stream_logs(follow=True):
                        got(line)

            asyncio.run(run())
        elif client == "kubernetes":
            api = k8s_api()
            resp = api.read_namespaced_pod_log(name, NAMESPACE, follow=True, _preload_content=False)
            pending = b""
            for raw in resp.stream():
                *complete, pending = (pending + raw).split(b"\n")
                for line in complete:
                    got(line.decode())
            if pending:
                got(pending.decode())
        elif client == "kubernetes_asyncio":
            from kubernetes_asyncio import client as aclient
            from kubernetes_asyncio import config as aconfig

            async def run_async() -> None:
                await aconfig.load_kube_config()
                async with aclient.ApiClient() as api_client:
                    v1 = aclient.CoreV1Api(api_client)
                    resp = await v1.read_namespaced_pod_log(name, NAMESPACE, follow=True, _preload_content=False)
                    while line := await resp.content.readline():
                        got(line.decode().rstrip("\n"))

            asyncio.run(run_async())
        else:
            proc = subprocess.Popen([KUBECTL, "-n", NAMESPACE, "logs", "-f", name], stdout=subprocess.PIPE)
            assert proc.stdout is not None
            for raw in proc.stdout:
                got(raw.decode().rstrip("\n"))
            proc.wait()
    kubectl("delete", "pod", name, "--wait=false", "--grace-period=1")
    complete = received == [str(i) for i in range(1, lines + 1)]
    span = arrivals[1] - arrivals[0]
    return {
        **timed.figures(client),
        "lines_per_s": round(len(received) / span) if span > 0 else None,
        "complete": complete,
    }


def bridge(client: str, n: int) -> dict[str, Any]:
    """n awaits of sandlot calls that do no I/O, against plain asyncio: a call that can
    finish at once (a connected client's `connect`), a call that must cross to the Rust
    runtime's threads and back (`yield_once`), and, for scale, asyncio's own handoff
    from another thread (`call_soon_threadsafe`) and a coroutine that returns."""
    import sandlot
    from sandlot import _native

    async def run() -> dict[str, Any]:
        async def noop() -> None:
            return None

        def per_call(seconds: float) -> float:
            return round(seconds / n * 1e6, 2)

        loop = asyncio.get_running_loop()
        handoff: queue.SimpleQueue[asyncio.Future[None] | None] = queue.SimpleQueue()

        def resolver() -> None:
            while (future := handoff.get()) is not None:
                loop.call_soon_threadsafe(future.set_result, None)

        figures: dict[str, Any] = {}
        async with sandlot.AsyncClient(NAMESPACE) as c:
            with Timed() as timed:
                for _ in range(n):
                    await c.connect()  # connected already: nothing to wait for
            figures["ready_call_us"] = per_call(timed.wall)
            t = time.perf_counter()
            for _ in range(n):
                await _native.yield_once()
            figures["crossing_call_us"] = per_call(time.perf_counter() - t)
        thread = threading.Thread(target=resolver)
        thread.start()
        t = time.perf_counter()
        for _ in range(n):
            future = loop.create_future()
            handoff.put(future)
            await future
        figures["asyncio_thread_handoff_us"] = per_call(time.perf_counter() - t)
        handoff.put(None)
        thread.join()
        t = time.perf_counter()
        for _ in range(n):
            await noop()
        figures["asyncio_noop_us"] = per_call(time.perf_counter() - t)
        return figures

    result: dict[str, Any] = asyncio.run(run())
    return result


SCENARIOS: dict[str, tuple[Callable[[str, int], dict[str, Any]], list[int], list[int], list[str]]] = {
    # name: (function, full sizes, quick sizes, clients)
    "fanout": (fanout, [10, 50], [3], CLIENTS),
    "waiting": (waiting, [200], [5], CLIENTS),
    "exec_latency": (exec_latency, [300], [5], CLIENTS),
    "exec_throughput": (exec_throughput, [100], [1], CLIENTS),
    "log_follow": (log_follow, [200_000], [100], CLIENTS),
    "bridge": (bridge, [10_000], [100], ["sandlot"]),
}
# Repetitions of a full run, to stay within 15 minutes on 2 cores: 200 pods take
# a minute per client to start and as long to stop, and the official client needs
# minutes for 100 MiB; those run once.
REPEATS = {"fanout": 2, "waiting": 1, "exec_latency": 1, "exec_throughput": 3, "log_follow": 2, "bridge": 3}
# The order scenarios run in: the one that leaves most pods to stop comes last,
# so nothing waits for them.
RUN_ORDER = ["bridge", "exec_latency", "exec_throughput", "log_follow", "fanout", "waiting"]
ONCE = {("exec_throughput", "kubernetes")}
# Seconds a run may take (the official client needs minutes for 100 MiB).
TIME_LIMITS = {"exec_throughput": 60}
# The figure each scenario is judged by, and whether more is better.
HEADLINE = {
    "fanout": ("wall_s", False),
    "waiting": ("cpu_ms_per_1000_changes", False),
    "exec_latency": ("p50_ms", False),
    "exec_throughput": ("mb_per_s", True),
    "log_follow": ("lines_per_s", True),
    "bridge": ("ready_call_us", False),
}


# --- the runner --------------------------------------------------------------------


def audited(window: list[float], offset: int) -> tuple[int, list[float]]:
    """Requests by the admin user in the bench namespace received within `window`
    (epoch seconds), read from the audit log from byte `offset`; and the server's
    time for each exec among them (received to complete, ms)."""
    if not AUDIT_LOG.exists():
        return 0, []
    if AUDIT_LOG.stat().st_size < offset:  # rotated
        offset = 0
    ids = set()
    exec_ms = []
    with AUDIT_LOG.open("rb") as log:
        log.seek(offset)
        for line in log:
            if not line.endswith(b"\n"):
                break  # still being written
            event = json.loads(line)
            if event.get("user", {}).get("username") != "sandlot-admin":
                continue
            received = datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
            if not window[0] <= received <= window[1]:
                continue
            ids.add(event["auditID"])
            if event["stage"] == "ResponseComplete" and event.get("objectRef", {}).get("subresource") == "exec":
                done = datetime.fromisoformat(event["stageTimestamp"]).timestamp()
                exec_ms.append((done - received) * 1000)
    return len(ids), exec_ms


def open_watches() -> int:
    """Watches of pods open at the API server (of one pod: scope "resource"; of many: "namespace")."""
    metrics = subprocess.run([KUBECTL, "get", "--raw", "/metrics"], capture_output=True, text=True).stdout
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in metrics.splitlines()
        if line.startswith("apiserver_longrunning_requests{")
        and 'resource="pods"' in line
        and 'scope="cluster"' not in line
        and 'subresource="",verb="WATCH"' in line
    )


def run_worker(scenario: str, client: str, size: int) -> dict[str, Any]:
    """One repetition in a fresh process. While the `waiting` scenario runs, open
    watches are sampled from here, so the sampling is not charged to the client.
    A run past its scenario's time limit is stopped and reported as such."""
    offset = AUDIT_LOG.stat().st_size if AUDIT_LOG.exists() else 0
    watches: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            watches.append(open_watches())

    sampler = threading.Thread(target=sample, daemon=True)
    if scenario == "waiting":
        sampler.start()
    limit = TIME_LIMITS.get(scenario, 1200)
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", scenario, client, str(size)],
            capture_output=True,
            text=True,
            timeout=limit,
        )
    except subprocess.TimeoutExpired:
        return {"outcome": f"stopped after {limit} s"}
    finally:
        done.set()
    if sampler.is_alive():
        sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{scenario}/{client}/{size} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    window = result.pop("_window", None)
    if window:
        time.sleep(1)  # let the audit log catch up
        requests, exec_ms = audited(window, offset)
        result["api_requests"] = requests
        if scenario == "exec_latency" and exec_ms:
            result["server_p50_ms"] = round(statistics.median(exec_ms), 1)
    if scenario == "waiting":
        result["max_open_watches"] = max(watches, default=0)
    return result


def clean_namespace() -> None:
    """An empty benchmark namespace and a quiet node: the deletion is graceful, so it
    returns once the kubelet has stopped the earlier run's containers."""
    subprocess.run([KUBECTL, "create", "namespace", NAMESPACE], capture_output=True)
    kubectl("delete", "pods", "--all", "--grace-period=1", "--wait=true", "--timeout=300s")


def median_row(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians (± half the spread) for display; the medians themselves under `_key`."""
    row: dict[str, Any] = {}
    for key in results[0]:
        values = [r.get(key) for r in results]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            numbers = [float(v) for v in values if v is not None]
            med = statistics.median(numbers)
            spread = max(numbers) - min(numbers)
            row[key] = f"{med:.4g}" + (f" ±{spread / 2:.2g}" if spread else "")
            row[f"_{key}"] = med
        else:
            row[key] = " / ".join(dict.fromkeys(str(v) for v in values))
    return row


def ratio(value: float, base: float, higher_is_better: bool) -> str:
    """How many times better sandlot is: above 1 means sandlot is ahead."""
    if not base or not value:
        return ""
    return f"{(base / value if higher_is_better else value / base):.2f}x"


def write_results(
    table: dict[str, dict[int, dict[str, dict[str, Any]]]], out: Path, quick: bool, minutes: float
) -> None:
    versions = {
        name: _version(name) for name in ("sandlot", "kubernetes", "kubernetes_asyncio", "websocket-client", "aiohttp")
    }
    kubectl_version = subprocess.run([KUBECTL, "version", "--client", "-o", "json"], capture_output=True, text=True)
    versions["kubectl"] = json.loads(kubectl_version.stdout or "{}").get("clientVersion", {}).get("gitVersion", "?")
    lines = [
        "# Benchmarks: sandlot and the alternatives",
        "",
        f"Made by `make bench` ({'quick' if quick else 'full'} run) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())},",
        f"in {minutes:.1f} minutes.",
        "",
        f"- Machine: {os.cpu_count()} cores, {_memory_gib():.0f} GiB, Linux {platform.release()}, Python {platform.python_version()},",
        "  shared with other work (absolute figures are noisy; ratios from the same run are what to compare).",
        "- Cluster: the repository's local single-node Kubernetes 1.34 (`make cluster`), containerd 1.6, runc.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"- Settings: {QPS_NOTE}. The official client runs concurrent work on a thread pool",
        "  of 32; kubernetes_asyncio and sandlot on one event loop; kubectl as one process per command",
        "  (16 at a time for execs).",
        "- Each repetition runs in a fresh process; clients run one after the other. Figures are",
        "  medians ± half the spread of the repetitions (repetitions per client in `reps`).",
        "- `wall_s` and `cpu_s` cover the client's part only (setup with kubectl and imports excluded);",
        "  CPU includes child processes (kubectl's own). `peak_rss_mib` is the worker's peak (kubectl: its",
        "  largest process). `api_requests` are counted at the API server from its audit log.",
        "- `vs sandlot`: the baseline's headline figure against sandlot's, as how many times better",
        "  sandlot is (above 1: sandlot ahead).",
        "",
    ]
    for scenario, sizes in table.items():
        headline, higher_is_better = HEADLINE[scenario]
        lines += [f"## {scenario}", "", " ".join((SCENARIOS[scenario][0].__doc__ or "").split()), ""]
        for size, by_client in sizes.items():
            keys = list(dict.fromkeys(k for row in by_client.values() for k in row if not k.startswith("_")))
            compare = len(by_client) > 1
            lines.append(
                f"size {size}; headline figure `{headline}` ({'higher' if higher_is_better else 'lower'} is better):"
            )
            lines.append("")
            lines.append("| client | " + " | ".join(keys) + (" | vs sandlot |" if compare else " |"))
            lines.append("|---" * (len(keys) + 1 + compare) + "|")
            base = by_client.get("sandlot", {}).get(f"_{headline}")
            for client, row in by_client.items():
                cells = [str(row.get(k, "")) for k in keys]
                if compare:
                    value = row.get(f"_{headline}")
                    cells.append("" if client == "sandlot" or value is None else ratio(value, base, higher_is_better))
                lines.append(f"| {client} | " + " | ".join(cells) + " |")
            lines.append("")
    (out / "results.md").write_text("\n".join(lines))
    charts(table, out / "charts")


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _memory_gib() -> float:
    with open("/proc/meminfo") as meminfo:
        return int(meminfo.readline().split()[1]) / 1024 / 1024


# Figures drawn per scenario (besides the headline).
CHART_FIGURES = {
    "fanout": ["wall_s", "cpu_s", "peak_rss_mib", "api_requests"],
    "waiting": ["cpu_ms_per_1000_changes", "api_requests", "max_open_watches", "wall_s"],
    "exec_latency": ["p50_ms", "p90_ms", "p99_ms", "cpu_s"],
    "exec_throughput": ["mb_per_s", "cpu_s", "peak_rss_mib"],
    "log_follow": ["lines_per_s", "cpu_s", "peak_rss_mib"],
    "bridge": ["ready_call_us", "crossing_call_us", "asyncio_thread_handoff_us", "asyncio_noop_us"],
}


def charts(table: dict[str, dict[int, dict[str, dict[str, Any]]]], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    for scenario, sizes in table.items():
        for size, by_client in sizes.items():
            figures = [f for f in CHART_FIGURES[scenario] if any(f"_{f}" in row for row in by_client.values())]
            if scenario == "bridge":  # one chart of sandlot's figures beside asyncio's
                fig, ax = plt.subplots(figsize=(4.8, 3.6))
                values = [by_client["sandlot"].get(f"_{f}", 0) for f in figures]
                ax.bar(range(len(figures)), values, color=["#2e8b57", "#2e8b57", "#6e7781", "#6e7781"])
                ax.set_xticks(range(len(figures)), [f.removesuffix("_us") for f in figures], rotation=30, ha="right")
                ax.set_yscale("log")
                ax.set_title("microseconds per await")
                fig.suptitle(f"{scenario}, size {size}")
                fig.tight_layout()
                fig.savefig(folder / f"{scenario}-{size}.png", dpi=90)
                plt.close(fig)
                continue
            fig, axes = plt.subplots(1, len(figures), figsize=(3.2 * len(figures), 3.2), squeeze=False)
            for ax, figure in zip(axes[0], figures, strict=True):
                clients = [c for c in by_client if by_client[c].get(f"_{figure}") is not None]
                values = [by_client[c][f"_{figure}"] for c in clients]
                ax.bar(clients, values, color=["#2e8b57" if c == "sandlot" else "#6e7781" for c in clients])
                ax.set_title(figure, fontsize=10)
                ax.tick_params(axis="x", labelrotation=30, labelsize=8)
            fig.suptitle(f"{scenario}, size {size}")
            fig.tight_layout()
            fig.savefig(folder / f"{scenario}-{size}.png", dpi=90)
            plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smallest sizes, one repetition")
    parser.add_argument("--out", type=Path, default=HERE, help="where results.md and charts/ go")
    parser.add_argument("--only", action="append", choices=list(SCENARIOS), help="run only these scenarios")
    parser.add_argument("--worker", nargs=3, metavar=("SCENARIO", "CLIENT", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        scenario, client, size = args.worker
        os.environ.setdefault("SANDLOT_NAMESPACE", NAMESPACE)
        print(json.dumps(SCENARIOS[scenario][0](client, int(size))))
        return
    started = time.monotonic()
    table: dict[str, dict[int, dict[str, dict[str, Any]]]] = {
        s: {} for s in SCENARIOS if not args.only or s in args.only
    }
    for scenario in RUN_ORDER:
        if scenario not in table:
            continue
        _, full, quick_sizes, clients = SCENARIOS[scenario]
        for size in quick_sizes if args.quick else full:
            # Rounds of one run per client, each round in a rotated order, so no
            # client always runs right after the same one.
            reps = {c: 1 if args.quick or (scenario, c) in ONCE else REPEATS[scenario] for c in clients}
            results: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
            for round_ in range(max(reps.values())):
                for client in clients[round_ % len(clients) :] + clients[: round_ % len(clients)]:
                    if len(results[client]) < reps[client]:
                        clean_namespace()
                        results[client].append(run_worker(scenario, client, size))
            for client in clients:
                row = {"reps": reps[client], **median_row(results[client])}
                table[scenario].setdefault(size, {})[client] = row
                print(
                    f"[{(time.monotonic() - started) / 60:4.1f} min] {scenario:16} size {size:<7} {client:18} "
                    + ", ".join(f"{k}={v}" for k, v in row.items() if not k.startswith("_")),
                    flush=True,
                )
    minutes = (time.monotonic() - started) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    write_results(table, args.out, args.quick, minutes)
    print(f"wrote {args.out / 'results.md'} in {minutes:.1f} minutes")


if __name__ == "__main__":
    main()
