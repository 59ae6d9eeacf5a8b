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
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KUBECTL = str(REPO / ".cluster" / "bin" / "kubectl")
AUDIT_LOG = Path(os.environ.get("SANDLOT_CLUSTER_STATE", "/var/lib/sandlot-cluster")) / "logs" / "audit.log"
NAMESPACE = "sandlot-bench"
BUSYBOX = "docker.io/library/busybox:1.36"
CLIENTS = ["sandlot", "kubernetes", "kubernetes_asyncio", "kubectl"]
MIB = 1024 * 1024
# Client-side rate limits, equalised: none of the clients throttles itself.
QPS_NOTE = "no client-side rate limit in any client (kubernetes clients have none; kubectl's is lifted)"


# --- helpers shared by the clients ------------------------------------------------


def pod_manifest(name: str, command: list[str] | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The same small, hardened pod every client creates."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "sandlot", **(labels or {})}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {
                    "name": "sandbox",
                    "image": BUSYBOX,
                    "command": command or ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"],
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "16Mi"},
                        "limits": {"cpu": "1", "memory": "256Mi"},
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


def k8s_exec(api: Any, name: str, command: list[str]) -> tuple[bytes, int]:
    """Exec with the official client's `stream()`, collecting stdout and the exit code.

    `stream()` patches the API client it is given while it runs, so each exec
    gets a client of its own (the usual workaround when threads share one)."""
    from kubernetes import client
    from kubernetes.stream import stream

    del api
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


async def k8s_asyncio_exec(api: Any, name: str, command: list[str]) -> tuple[bytes, int]:
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


# --- scenarios: each returns its metrics; wall time is measured around it ---------


def fanout(client: str, n: int) -> dict[str, Any]:
    """Create n pods, wait until all run, one echo exec in each, terminate all."""
    batch = uuid.uuid4().hex[:6]
    names = [f"fan-{batch}-{i}" for i in range(n)]
    outputs: list[bytes] = []
    if client == "sandlot":
        import sandlot

        async def run() -> None:
            async with sandlot.AsyncClient(NAMESPACE) as c:
                sbs = await asyncio.gather(*(c.sandboxes.create(BUSYBOX, name=nm) for nm in names))
                await c.sandboxes.wait_all(sbs, "running", timeout=600)
                results = await asyncio.gather(*(sb.exec(["echo", sb.name]) for sb in sbs))
                outputs.extend(r.stdout_bytes for r in results)
                await c.sandboxes.terminate_many(sbs)

        asyncio.run(run())
    elif client == "kubernetes":
        api = k8s_api()

        def one(nm: str) -> bytes:
            api.create_namespaced_pod(NAMESPACE, pod_manifest(nm))
            while api.read_namespaced_pod(nm, NAMESPACE).status.phase != "Running":
                time.sleep(0.5)
            out, _ = k8s_exec(api, nm, ["echo", nm])
            api.delete_namespaced_pod(nm, NAMESPACE, grace_period_seconds=2)
            return out

        with ThreadPoolExecutor(max_workers=min(n, 32)) as pool:
            outputs.extend(pool.map(one, names))
    elif client == "kubernetes_asyncio":
        from kubernetes_asyncio import client as aclient
        from kubernetes_asyncio import config as aconfig
        from kubernetes_asyncio import watch as awatch

        async def run_async() -> None:
            await aconfig.load_kube_config()
            async with aclient.ApiClient() as api_client:
                v1 = aclient.CoreV1Api(api_client)

                async def one(nm: str) -> bytes:
                    await v1.create_namespaced_pod(NAMESPACE, pod_manifest(nm))
                    w = awatch.Watch()
                    async for event in w.stream(
                        v1.list_namespaced_pod, NAMESPACE, field_selector=f"metadata.name={nm}", timeout_seconds=600
                    ):
                        if event["object"].status.phase == "Running":
                            w.stop()
                    out, _ = await k8s_asyncio_exec(v1, nm, ["echo", nm])
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
    return {"correct": f"{correct}/{n}"}


def waiting(client: str, n: int) -> dict[str, Any]:
    """Wait for n pods created at once to run, sampling open watches meanwhile."""
    batch = uuid.uuid4().hex[:6]
    names = [f"wait-{batch}-{i}" for i in range(n)]
    manifests = "\n---\n".join(json.dumps(pod_manifest(nm, labels={"batch": batch})) for nm in names)
    kubectl("apply", "-f", "-", stdin=manifests)
    watches: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            metrics = subprocess.run([KUBECTL, "get", "--raw", "/metrics"], capture_output=True, text=True).stdout
            # A watch of one named pod counts under scope "resource", of many under "namespace".
            watches.append(
                sum(
                    int(float(line.rsplit(" ", 1)[1]))
                    for line in metrics.splitlines()
                    if line.startswith("apiserver_longrunning_requests{")
                    and 'resource="pods"' in line
                    and 'scope="cluster"' not in line
                    and 'subresource="",verb="WATCH"' in line
                )
            )
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
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
        from kubernetes_asyncio import watch as awatch

        async def run_async() -> None:
            await aconfig.load_kube_config()
            async with aclient.ApiClient() as api_client:
                v1 = aclient.CoreV1Api(api_client)

                async def one(nm: str) -> None:
                    w = awatch.Watch()
                    async for event in w.stream(
                        v1.list_namespaced_pod, NAMESPACE, field_selector=f"metadata.name={nm}", timeout_seconds=600
                    ):
                        if event["object"].status.phase == "Running":
                            w.stop()

                await asyncio.gather(*(one(nm) for nm in names))

        asyncio.run(run_async())
    else:
        kubectl("wait", "--for=jsonpath={.status.phase}=Running", "--timeout=600s", "pod", "-l", f"batch={batch}")
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()
    kubectl("delete", "pod", "-l", f"batch={batch}", "--wait=false", "--grace-period=0", "--force")
    return {"wait_s": round(elapsed, 2), "max_open_watches": max(watches, default=0)}


def running_pod() -> str:
    name = f"bench-{uuid.uuid4().hex[:6]}"
    manifest = pod_manifest(name)
    manifest["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1", "memory": "512Mi"}}
    kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    kubectl("wait", "--for=condition=Ready", "--timeout=120s", f"pod/{name}")
    return name


def exec_latency(client: str, n: int) -> dict[str, Any]:
    """n sequential `true` execs into one running pod."""
    name = running_pod()
    times: list[float] = []
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
        api = k8s_api()
        for _ in range(n):
            t = time.perf_counter()
            k8s_exec(api, name, ["true"])
            times.append(time.perf_counter() - t)
    elif client == "kubernetes_asyncio":
        from kubernetes_asyncio import config as aconfig

        async def run_async() -> None:
            await aconfig.load_kube_config()
            for _ in range(n):
                t = time.perf_counter()
                await k8s_asyncio_exec(None, name, ["true"])
                times.append(time.perf_counter() - t)

        asyncio.run(run_async())
    else:
        for _ in range(n):
            t = time.perf_counter()
            kubectl("exec", name, "--", "true")
            times.append(time.perf_counter() - t)
    kubectl("delete", "pod", name, "--wait=false", "--grace-period=0", "--force")
    qs = statistics.quantiles(times, n=100)
    result = {"p50_ms": round(qs[49] * 1000, 1), "p90_ms": round(qs[89] * 1000, 1), "p99_ms": round(qs[98] * 1000, 1)}
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
    """`mib` MiB from stdout, checked by sha256."""
    name = running_pod()
    kubectl("exec", name, "--", "sh", "-c", f"head -c {mib * MIB} /dev/urandom > /tmp/blob")
    expected = kubectl("exec", name, "--", "sha256sum", "/tmp/blob").stdout.split()[0].decode()
    started = time.monotonic()
    if client == "sandlot":
        import sandlot

        async def run() -> bytes:
            async with sandlot.AsyncClient(NAMESPACE) as c:
                sb = await c.sandboxes.get(name)
                return (await sb.exec(["cat", "/tmp/blob"])).stdout_bytes

        data = asyncio.run(run())
    elif client == "kubernetes":
        data, _ = k8s_exec(k8s_api(), name, ["cat", "/tmp/blob"])
    elif client == "kubernetes_asyncio":
        from kubernetes_asyncio import config as aconfig

        async def run_async() -> bytes:
            await aconfig.load_kube_config()
            out, _ = await k8s_asyncio_exec(None, name, ["cat", "/tmp/blob"])
            return out

        data = asyncio.run(run_async())
    else:
        data = kubectl("exec", name, "--", "cat", "/tmp/blob").stdout
    elapsed = time.monotonic() - started
    kubectl("delete", "pod", name, "--wait=false", "--grace-period=0", "--force")
    intact = hashlib.sha256(data).hexdigest() == expected
    return {"mb_per_s": round(len(data) / MIB / elapsed, 1) if intact else None, "intact": intact, "bytes": len(data)}


def log_follow(client: str, lines: int) -> dict[str, Any]:
    """A pod printing `lines` lines as fast as it can, followed to the end."""
    name = f"logs-{uuid.uuid4().hex[:6]}"
    command = ["sh", "-c", f"sleep 2; seq 1 {lines}"]
    received: list[str] = []
    kubectl("apply", "-f", "-", stdin=json.dumps(pod_manifest(name, command=command)))
    kubectl("wait", "--for=jsonpath={.status.phase}=Running", "--timeout=120s", f"pod/{name}")
    started = time.monotonic()
    if client == "sandlot":
        import sandlot

        async def run() -> None:
            async with sandlot.AsyncClient(NAMESPACE) as c:
                sb = await c.sandboxes.get(name)
                async for line in sb.stream_logs(follow=True):
                    received.append(line)

        asyncio.run(run())
    else:
        if client == "kubernetes":
            api = k8s_api()
            resp = api.read_namespaced_pod_log(name, NAMESPACE, follow=True, _preload_content=False)
            for raw in resp.stream():
                received.extend(raw.decode().splitlines())
        elif client == "kubernetes_asyncio":
            from kubernetes_asyncio import client as aclient
            from kubernetes_asyncio import config as aconfig

            async def run_async() -> None:
                await aconfig.load_kube_config()
                async with aclient.ApiClient() as api_client:
                    v1 = aclient.CoreV1Api(api_client)
                    resp = await v1.read_namespaced_pod_log(name, NAMESPACE, follow=True, _preload_content=False)
                    while line := await resp.content.readline():
                        received.append(line.decode().rstrip("\n"))

            asyncio.run(run_async())
        else:
            received.extend(kubectl("logs", "-f", name).stdout.decode().splitlines())
    elapsed = time.monotonic() - started
    kubectl("delete", "pod", name, "--wait=false", "--grace-period=0", "--force")
    complete = received == [str(i) for i in range(1, lines + 1)]
    return {"lines_per_s": round(len(received) / elapsed), "complete": complete}


def bridge(client: str, n: int) -> dict[str, Any]:
    """n awaits of a sandlot call that does no I/O, against a plain asyncio no-op."""
    import sandlot

    async def run() -> dict[str, Any]:
        async def noop() -> None:
            return None

        async with sandlot.AsyncClient(NAMESPACE) as c:
            await c.connect()
            t = time.perf_counter()
            for _ in range(n):
                await c.connect()  # connected already: no I/O, one trip across the bridge
            native = (time.perf_counter() - t) / n
        t = time.perf_counter()
        for _ in range(n):
            await noop()
        plain = (time.perf_counter() - t) / n
        return {"sandlot_us": round(native * 1e6, 1), "asyncio_noop_us": round(plain * 1e6, 2)}

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
REPEATS = {"fanout": 3, "waiting": 1, "exec_latency": 1, "exec_throughput": 3, "log_follow": 3, "bridge": 3}


# --- the runner --------------------------------------------------------------------


def audited_requests(offset: int) -> tuple[int, int]:
    """Requests by the admin user in the bench namespace logged after `offset`, and the new offset."""
    if not AUDIT_LOG.exists():
        return 0, 0
    size = AUDIT_LOG.stat().st_size
    if size < offset:  # rotated
        offset = 0
    ids = set()
    with AUDIT_LOG.open("rb") as log:
        log.seek(offset)
        for line in log:
            event = json.loads(line)
            if event.get("user", {}).get("username") == "sandlot-admin":
                ids.add(event["auditID"])
    return len(ids), size


def run_worker(scenario: str, client: str, size: int) -> dict[str, Any]:
    offset = AUDIT_LOG.stat().st_size if AUDIT_LOG.exists() else 0
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", scenario, client, str(size)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{scenario}/{client}/{size} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    time.sleep(1)  # let the audit log catch up
    requests, _ = audited_requests(offset)
    result.update(wall_s=round(wall, 2), api_requests=requests)
    return result


def clean_namespace() -> None:
    subprocess.run([KUBECTL, "create", "namespace", NAMESPACE], capture_output=True)
    kubectl("delete", "pods", "--all", "--grace-period=0", "--force", "--wait=true")


def median_row(results: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key in results[0]:
        values = [r[key] for r in results]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            med = statistics.median(values)
            spread = (max(values) - min(values)) if len(values) > 1 else 0
            row[key] = f"{med:g}" + (f" ±{spread / 2:.3g}" if spread else "")
            row[f"_{key}"] = med
        else:
            row[key] = " / ".join(dict.fromkeys(str(v) for v in values))
    return row


def write_results(table: dict[str, dict[int, dict[str, dict[str, Any]]]], out: Path, quick: bool) -> None:
    lines = [
        "# Benchmarks: sandlot and the alternatives",
        "",
        f"Made by `make bench` ({'quick' if quick else 'full'} run) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()};",
        "the local single-node Kubernetes 1.34 of this repository. Every client runs in a fresh process, one after",
        f"the other, in one run. {QPS_NOTE}. Figures are medians (± half the spread) of the repetitions;",
        "`ratio` is the client's figure divided by sandlot's (for times, above 1 means sandlot is faster).",
        "CPU and peak RSS are the worker process's own (with the kubectl processes it ran; RSS is the larger of the",
        "two); wall time includes the worker's start. API requests are counted",
        "at the API server (audit log), for the client's user in the benchmark namespace.",
        "",
    ]
    for scenario, sizes in table.items():
        lines.append(f"## {scenario}")
        lines.append("")
        lines.append((SCENARIOS[scenario][0].__doc__ or "").strip())
        lines.append("")
        for size, by_client in sizes.items():
            keys = [k for k in next(iter(by_client.values())) if not k.startswith("_")]
            lines.append(f"size {size}:")
            lines.append("")
            lines.append("| client | " + " | ".join(keys) + " | ratio (wall) |")
            lines.append("|---" * (len(keys) + 2) + "|")
            base = by_client.get("sandlot", {}).get("_wall_s")
            for client, row in by_client.items():
                ratio = f"{row['_wall_s'] / base:.2f}" if base and "_wall_s" in row else ""
                lines.append(f"| {client} | " + " | ".join(str(row[k]) for k in keys) + f" | {ratio} |")
            lines.append("")
    (out / "results.md").write_text("\n".join(lines))
    charts(table, out / "charts")


def charts(table: dict[str, dict[int, dict[str, dict[str, Any]]]], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    for scenario, sizes in table.items():
        for size, by_client in sizes.items():
            metric = next(
                (
                    k
                    for k in ("_p50_ms", "_mb_per_s", "_lines_per_s", "_sandlot_us")
                    if k in next(iter(by_client.values()))
                ),
                "_wall_s",
            )
            clients = [c for c in by_client if metric in by_client[c]]
            values = [by_client[c][metric] for c in clients]
            fig, ax = plt.subplots(figsize=(6, 3))
            ax.bar(clients, values, color=["#2e8b57" if c == "sandlot" else "#6e7781" for c in clients])
            ax.set_title(f"{scenario} (size {size}): {metric.strip('_')}")
            fig.tight_layout()
            fig.savefig(folder / f"{scenario}-{size}.png")
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
        result = SCENARIOS[scenario][0](client, int(size))
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        result["cpu_s"] = round(own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime, 2)
        result["peak_rss_mib"] = round(max(own.ru_maxrss, children.ru_maxrss) / 1024, 1)
        print(json.dumps(result))
        return
    table: dict[str, dict[int, dict[str, dict[str, Any]]]] = {}
    for scenario, (_, full, quick_sizes, clients) in SCENARIOS.items():
        if args.only and scenario not in args.only:
            continue
        for size in quick_sizes if args.quick else full:
            for client in clients:
                clean_namespace()
                reps = 1 if args.quick else REPEATS[scenario]
                results = [run_worker(scenario, client, size) for _ in range(reps)]
                row = median_row(results)
                table.setdefault(scenario, {}).setdefault(size, {})[client] = row
                print(
                    f"{scenario:16} size {size:<7} {client:18} "
                    + ", ".join(f"{k}={v}" for k, v in row.items() if not k.startswith("_")),
                    flush=True,
                )
    args.out.mkdir(parents=True, exist_ok=True)
    write_results(table, args.out, args.quick)
    print(f"wrote {args.out / 'results.md'}")


if __name__ == "__main__":
    main()
