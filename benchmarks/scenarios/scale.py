"""Scale: thousands of sandboxes created, waited for and terminated at once, on the
scale cluster's fake nodes (KWOK), sandlot against kubernetes_asyncio and the
official client.

Sizes: `full_sizes` below; the environment variable SANDLOT_SCALE_SIZES (sizes
separated by commas, e.g. `SANDLOT_SCALE_SIZES=1000,5000`) replaces them for a
full run that cannot wait for the largest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from benchmarks.clients.base import Client
from benchmarks.cluster import KUBECTL, NAMESPACE, REPO, kubectl
from benchmarks.measure import Figures, Timed, audit_log_size, audited
from benchmarks.scenarios.base import Scenario

CLUSTER_SH = REPO / "tests" / "cluster" / "cluster.sh"
FAKE_NODES = 50
# Seconds to wait, untimed, for the observer to see the last deletions.
DRAIN_S = 120.0
# A process that watches the pods of namespace argv[2] through kubectl argv[1]
# (`get --raw` of a cluster-scope watch filtered to the namespace) and writes one line
# per event to its stdout: the time it was read (epoch seconds), type, name, uid,
# phase, the Ready condition's lastTransitionTime. When the watch ends (the API server
# closes a watcher that falls behind, or its timeout) it resumes from the last
# resourceVersion seen (bookmarks included) and writes `RESTART|rv`; when that
# resourceVersion is gone (410) it starts afresh and writes `GAP|rv`: events in
# between may be missing.
OBSERVER = r"""
import json, subprocess, sys, time
kubectl, namespace = sys.argv[1:3]
out = sys.stdout
rv = ""
while True:
    path = f"/api/v1/pods?watch=1&allowWatchBookmarks=true&fieldSelector=metadata.namespace%3D{namespace}"
    if rv:
        path += f"&resourceVersion={rv}"
    proc = subprocess.Popen([kubectl, "get", "--raw", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    for line in proc.stdout:
        read_at = time.time()
        event = json.loads(line)
        kind, obj = event["type"], event["object"]
        if kind == "ERROR":
            if obj.get("code") == 410:
                out.write(f"GAP|{rv}\n")
                rv = ""
            break
        rv = obj["metadata"]["resourceVersion"]
        if kind == "BOOKMARK":
            continue
        status = obj.get("status", {})
        ready = next((c.get("lastTransitionTime", "") for c in status.get("conditions", []) if c["type"] == "Ready"), "")
        meta = obj["metadata"]
        out.write(f"{read_at:.6f}|{kind}|{meta['name']}|{meta['uid']}|{status.get('phase', '')}|{ready}\n")
        out.flush()
    proc.kill()
    proc.wait()
    out.write(f"RESTART|{rv}\n")
    out.flush()
    time.sleep(0.2)
"""


def fake_nodes_ready() -> int:
    """How many fake nodes are Ready now."""
    ready = subprocess.run(
        [
            KUBECTL,
            "get",
            "nodes",
            "-l",
            "type=kwok",
            "-o",
            'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    return ready.count("True")


def scale_cluster(action: str, *args: str) -> None:
    """`cluster.sh scale <action> <args>`, raising with its output when it fails."""
    done = subprocess.run(["bash", str(CLUSTER_SH), "scale", action, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cluster.sh scale {action} failed: {done.stderr[-2000:]}")


@contextlib.contextmanager
def scale_cluster_up() -> Iterator[None]:
    """The scale cluster up, its fake nodes all Ready, for every run of the scenario;
    taken down after the last if it was not up before (a scale cluster someone
    brought up stays up)."""
    was_up = fake_nodes_ready() > 0
    try:
        scale_cluster("up", str(FAKE_NODES))
        yield
    finally:
        if not was_up:
            scale_cluster("down")


class Observer:
    """Every event of the benchmark namespace's pods, as a watch of its own sees them:
    a `kubectl get pods --watch` in a process group of its own (a cluster-scope watch
    filtered to the namespace, so the API server's audit log and its count of open
    namespace watches leave it out), reaped only after the timed part, so its CPU time
    is not the client's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out = path.open("w")
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                OBSERVER,
                KUBECTL,
                NAMESPACE,
            ],
            stdout=self._out,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def events(self, prefix: str) -> list[tuple[float, str, str, str, str, str]]:
        """(read at, type, name, uid, phase, Ready since) of the pods named `prefix`…"""
        events = []
        for line in self.path.read_text().splitlines():
            fields = line.split("|")
            if len(fields) == 6 and fields[2].startswith(prefix):
                read_at, kind, name, uid, phase, ready = fields
                events.append((float(read_at), kind, name, uid, phase, ready))
        return events

    def interruptions(self) -> dict[str, int]:
        """How often the watch was resumed (`observer_restarts`) and how often it had to
        start afresh with events possibly missed (`observer_gaps`), those that happened."""
        lines = self.path.read_text().splitlines()
        counts = {
            "observer_restarts": sum(line.startswith("RESTART|") for line in lines),
            "observer_gaps": sum(line.startswith("GAP|") for line in lines),
        }
        return {name: count for name, count in counts.items() if count}

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGTERM)
        self._proc.wait()
        self._out.close()


def rss_mib() -> float:
    """This process's resident memory now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def left(prefix: str) -> int:
    """Pods named `prefix`… in the namespace now."""
    names = kubectl("get", "pods", "-o", "name").stdout.decode().split()
    return sum(name.removeprefix("pod/").startswith(prefix) for name in names)


def scale(client: Client, n: int) -> Figures:
    """On the scale cluster (`cluster.sh scale up 50`: 50 fake KWOK nodes, where a pod
    of RuntimeClass `kwok` runs at once and nothing is behind it), n pods created,
    waited for until all run, then terminated, by one client in one process, as its
    users write it: 100 creates in flight at a time (asyncio tasks behind a
    semaphore, or 100 threads). sandlot: `sandboxes.create(runtime_class="kwok",
    network="unrestricted", user_namespace=False)` with its default request rate (50
    requests/s, bursts of 300), `wait_all(..., "running")`, `terminate_many`, `purge`.
    kubernetes_asyncio and the official client: the same pod as sandlot's
    (`pod_manifest`, RuntimeClass kwok, labelled by batch); a list of the batch
    before the creates and one watch of the namespace by its label from that list's
    resourceVersion, started before the creates, until every pod has run; then one
    `delete_collection` of the batch with grace 0 (its answer, the pods deleted, read
    as JSON: the typed return drops it); no client-side rate limit. Both libraries
    deserialize every watched pod into their models. kube-scheduler binds
    about 50 pods/s here, so n pods run no sooner than n/50 s after the first create,
    whoever creates them. `cpu_s_per_1000` and `rss_mib_per_1000` are the worker's CPU
    time and peak RSS (Python included) per 1,000 pods; `rss_growth_mib_per_1000` the
    peak above the worker's RSS just before (its library imported) per 1,000 pods.
    `requests_per_sandbox` counts every request of the timed part at the API server
    (the runner's `api_requests` ÷ n); for sandlot, `requests_per_sandbox_to_terminate`
    the same up to the end of `terminate_many` (the purge after it left out). A separate watch (kubectl,
    untimed, unaudited, resumed from its last resourceVersion when the API server
    ends it; `observer_restarts`/`observer_gaps` say when that happened) sees every pod event: `lost` counts pods it never saw running,
    `duplicated` pods beyond one per name (another uid, or a name not asked for),
    `left` pods of the batch still there after the client returned and the deletions
    drained (0 expected). `last_running_to_return_ms`: from that watch reading the
    last pod's Running event to the client's wait returning (ms resolution; the
    watch's own lag, a few ms, makes it a little short); `last_ready_to_return_s`: the
    same from the last pod's Ready lastTransitionTime (1 s resolution, up to 1 s long)."""
    if (nodes_ready := fake_nodes_ready()) != FAKE_NODES:
        raise RuntimeError(f"{nodes_ready} of {FAKE_NODES} fake nodes Ready")
    batch = uuid.uuid4().hex[:6]
    prefix = f"scale-{batch}-"
    names = [f"{prefix}{i}" for i in range(n)]
    log = Path(f"/tmp/sandlot-bench-scale-{batch}.events")
    observer = Observer(log)
    try:
        time.sleep(2)  # the observer's watch open
        offset = audit_log_size()
        rss_before = rss_mib()
        with Timed() as timed:
            seen = client.create_wait_terminate(names, batch)
        deadline = time.monotonic() + DRAIN_S
        while left(prefix) and time.monotonic() < deadline:
            time.sleep(1)
        remaining = left(prefix)
        time.sleep(1)  # the observer's last events
    finally:
        observer.stop()
        events = observer.events(prefix)
        interruptions = observer.interruptions()
        log.unlink(missing_ok=True)
        kubectl("delete", "pods", "-l", f"batch={batch}", "--grace-period=0", "--force", "--wait=false")
        kubectl(
            "delete", "pods", "-l", f"tags.sandlot.dev/batch={batch}", "--grace-period=0", "--force", "--wait=false"
        )
    expected = set(names)
    uids: dict[str, set[str]] = {}
    running_at: dict[str, float] = {}
    ready_since: dict[str, str] = {}
    for read_at, kind, name, uid, phase, ready in events:
        uids.setdefault(name, set()).add(uid)
        if kind != "DELETED" and phase == "Running" and name not in running_at:
            running_at[name] = read_at
            ready_since[name] = ready
    waited_at = float(seen["waited_at"])  # type: ignore[arg-type]
    figures = timed.figures(client)
    figures["cpu_s_per_1000"] = round(figures["cpu_s"] * 1000 / n, 3)
    figures["rss_mib_per_1000"] = round(figures["peak_rss_mib"] * 1000 / n, 2)
    figures["rss_growth_mib_per_1000"] = round((figures["peak_rss_mib"] - rss_before) * 1000 / n, 2)
    if "terminated_at" in seen:
        # The requests up to the end of the terminate, the purge after it left out.
        requests, _ = audited([timed.window_start, float(seen["terminated_at"])], offset)  # type: ignore[arg-type]
        figures["requests_per_sandbox_to_terminate"] = round(requests / n, 2)
    if running_at:
        figures["last_running_to_return_ms"] = round((waited_at - max(running_at.values())) * 1000, 1)
        last_ready = max(datetime.fromisoformat(r).timestamp() for r in ready_since.values() if r)
        figures["last_ready_to_return_s"] = round(waited_at - last_ready, 2)
        figures["all_running_s"] = round(max(running_at.values()) - timed.window_start, 2)
    figures["created"] = f"{seen['created']}/{n}"
    figures["client_saw_running"] = f"{seen['running']}/{n}"
    figures["ended"] = f"{seen['ended']}/{n}"
    for extra in ("terminate_errors", "purged"):
        if extra in seen:
            figures[extra] = seen[extra]
    figures["lost"] = len(expected - set(running_at))
    figures["duplicated"] = sum(len(u) - 1 for u in uids.values()) + len(set(uids) - expected)
    figures["left"] = remaining
    figures.update(interruptions)
    figures["_sandboxes"] = n
    return figures


SIZES = tuple(int(size) for size in os.environ.get("SANDLOT_SCALE_SIZES", "").split(",") if size.strip())

SCENARIO = Scenario(
    name="scale",
    measure=scale,
    full_sizes=SIZES or (1000, 5000, 10000),
    quick_sizes=(100,),
    repeats=1,  # 10,000 pods take minutes per client to create and as long to end
    headline="cpu_s_per_1000",
    higher_is_better=False,
    chart_figures=("cpu_s_per_1000", "rss_mib_per_1000", "requests_per_sandbox", "wall_s"),
    clients=("sandlot", "kubernetes_asyncio", "kubernetes"),
    quick_by_default=False,
    # sandlot at 10,000 and 50 requests/s: about 200 s of creates, 200 s of terminates, 200 s of purges.
    time_limit_s=3600,
    samples_open_watches=True,
    surroundings=scale_cluster_up,
)
