"""The figures every scenario shares: the client's wall and CPU time and peak memory
(taken in the worker), and requests and open watches at the API server (taken by the
runner, so the client is not charged for them)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.clients.base import Client
from benchmarks.cluster import KUBECTL

# A scenario's figures: JSON values by name.
Figures = dict[str, Any]
CLUSTER_STATE = Path(os.environ.get("SANDLOT_CLUSTER_STATE", "/var/lib/sandlot-cluster"))
AUDIT_LOG = CLUSTER_STATE / "logs" / "audit.log"


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

    def figures(self, client: Client) -> Figures:
        """The common figures; peak RSS is the Python process's, or for a client working in
        child processes (kubectl) its largest process's. `_window` is for the runner."""
        who = resource.RUSAGE_CHILDREN if client.works_in_child_processes else resource.RUSAGE_SELF
        return {
            "wall_s": round(self.wall, 3),
            "cpu_s": round(self.cpu, 3),
            "peak_rss_mib": round(resource.getrusage(who).ru_maxrss / 1024, 1),
            "_window": [self.window_start, self.window_end],
        }


def cluster_cpu_seconds() -> float:
    """CPU seconds used so far by the local cluster's processes that are running now
    (API server, kubelet, containerd and the rest started from its state directory):
    read before and after a timed part, the difference is what the cluster spent on it."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if str(CLUSTER_STATE).encode() not in (proc / "cmdline").read_bytes():
                continue
            # utime and stime: fields 14 and 15, counted after the command's closing parenthesis.
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def audit_log_size() -> int:
    """Where the audit log ends now: the offset to read a run's requests from."""
    return AUDIT_LOG.stat().st_size if AUDIT_LOG.exists() else 0


def audit_events(window: list[float], offset: int) -> Iterator[dict[str, Any]]:
    """The audit log's events of requests received within `window` (epoch seconds),
    read from byte `offset`, kwok's left out (it uses the admin's credentials). Where
    the API server rotated the log meanwhile (at its --audit-log-maxsize), the backups
    written to since the window opened are read too, from their start (the window
    sorts out what came before)."""
    if not AUDIT_LOG.exists():
        return
    rotated = sorted(
        (path for path in AUDIT_LOG.parent.glob("audit-*.log") if path.stat().st_mtime >= window[0]),
        key=lambda path: path.stat().st_mtime,
    )
    if rotated or AUDIT_LOG.stat().st_size < offset:
        offset = 0
    for path in [*rotated, AUDIT_LOG]:
        with path.open("rb") as log:
            log.seek(offset if path == AUDIT_LOG else 0)
            for line in log:
                if not line.endswith(b"\n"):
                    break  # still being written
                event = json.loads(line)
                if event.get("userAgent", "").startswith("kwok/"):
                    continue  # the scale cluster's fake kubelets
                received = datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
                if window[0] <= received <= window[1]:
                    yield event


def audited(window: list[float], offset: int) -> tuple[int, list[float]]:
    """Requests by the admin user in the bench namespace received within `window`
    (see `audit_events`), and the server's time for each exec among them (received to
    complete, ms)."""
    ids = set()
    exec_ms = []
    for event in audit_events(window, offset):
        if event.get("user", {}).get("username") != "sandlot-admin":
            continue
        ids.add(event["auditID"])
        if event["stage"] == "ResponseComplete" and event.get("objectRef", {}).get("subresource") == "exec":
            done = datetime.fromisoformat(event["stageTimestamp"]).timestamp()
            exec_ms.append((done - datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()) * 1000)
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
