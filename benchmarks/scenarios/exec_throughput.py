"""Exec throughput: one exec's large stdout."""

from __future__ import annotations

import hashlib

from benchmarks.clients.base import Client
from benchmarks.cluster import kubectl, running_pod
from benchmarks.measure import Figures, Timed
from benchmarks.scenarios.base import Scenario

MIB = 1024 * 1024


def exec_throughput(client: Client, mib: int) -> Figures:
    """`mib` MiB of random bytes from stdout, checked by sha256."""
    name = running_pod()
    kubectl("exec", name, "--", "sh", "-c", f"head -c {mib * MIB} /dev/urandom > /tmp/blob")
    expected = kubectl("exec", name, "--", "sha256sum", "/tmp/blob").stdout.split()[0].decode()
    with Timed() as timed:
        data = client.exec_stdout(name, ["cat", "/tmp/blob"])
    kubectl("delete", "pod", name, "--wait=false", "--grace-period=1")
    intact = hashlib.sha256(data).hexdigest() == expected
    figures = timed.figures(client)
    return {
        **figures,
        # A client that loses data is reported as such, not timed.
        "mb_per_s": round(len(data) / MIB / timed.wall, 1) if intact else None,
        "intact": intact,
        "bytes": len(data),
    }


SCENARIO = Scenario(
    name="exec_throughput",
    measure=exec_throughput,
    full_sizes=(100,),
    quick_sizes=(1,),
    repeats=3,
    headline="mb_per_s",
    higher_is_better=True,
    chart_figures=("mb_per_s", "cpu_s", "peak_rss_mib"),
    runs_once=("kubernetes",),  # the official client needs minutes for 100 MiB
    time_limit_s=60,
)
