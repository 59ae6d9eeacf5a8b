"""A client SIGKILLed right after it asked for a sandbox: whatever it left
behind must end by itself (a finite lifetime), since nobody will terminate it."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import sandlot
from conftest import Kubectl, unique

from .conftest import Row, Scale
from .harness import BUSYBOX

PARALLEL = 10

# The client: connects, says "go" just before the create call, then creates
# and lingers; the test kills it 0-200 ms after "go".
CHILD = """
import sys, time, sandlot
client = sandlot.Client(sys.argv[1])
client.connect()
print("go", flush=True)
client.sandboxes.create(sys.argv[2], tags={"killed": sys.argv[3]})
print("created", flush=True)
time.sleep(120)
"""


def kill_after_create(namespace: str, tag: str, delay: float) -> str:
    """Runs one client and SIGKILLs it `delay` seconds after its create call
    began; returns what it had printed by then."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, namespace, BUSYBOX, tag],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    try:
        assert child.stdout is not None and child.stderr is not None
        said = child.stdout.readline()  # "go", or "" if it died first
        if said.strip() == "go":
            time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        return f"{said.strip()} {child.stdout.read().strip()} {child.stderr.read().strip()[-300:]}".strip()
    finally:
        if child.poll() is None:
            child.kill()


async def test_sandboxes_of_killed_clients_have_an_end(
    sandlot_async_client: sandlot.AsyncClient, sandlot_namespace: str, scale: Scale, record: Callable[[Row], None]
) -> None:
    # The namespace and its service account exist before the first client
    # starts, so each create is one request the kill can land before or after.
    await (await sandlot_async_client.sandboxes.create(BUSYBOX, command=["true"])).wait("succeeded", timeout=300)
    tag = unique("killed")
    kubectl = Kubectl(sandlot_namespace)
    delays = [random.Random(14 + i).uniform(0, 0.2) for i in range(scale.killed_clients)]
    said: list[str] = []
    for start in range(0, len(delays), PARALLEL):
        said += await asyncio.gather(
            *(asyncio.to_thread(kill_after_create, sandlot_namespace, tag, d) for d in delays[start : start + PARALLEL])
        )
    connected = sum(1 for s in said if s.startswith("go"))
    acknowledged = sum(1 for s in said if "created" in s)
    await asyncio.sleep(2)  # a create already sent lands
    pods = (await asyncio.to_thread(kubectl.json, "get", "pods", "-l", f"tags.sandlot.dev/killed={tag}"))["items"]
    endless = [
        p["metadata"]["name"]
        for p in pods
        if p["spec"].get("activeDeadlineSeconds") is None
        and p["status"].get("phase") not in ("Succeeded", "Failed")
        and "deletionTimestamp" not in p["metadata"]
    ]
    deadlines = sorted({p["spec"].get("activeDeadlineSeconds") for p in pods} - {None})
    record(
        Row(
            "client SIGKILLed 0-200 ms after create",
            f"{scale.killed_clients} clients killed ({connected} had connected, {acknowledged} saw their create answered)",
            f"sandboxes left: {len(pods)}; without an end (no lifetime, still running) {len(endless)} (want 0)",
            f"lifetimes of those left: {', '.join(f'{d} s' for d in deadlines) or 'none'}",
            not endless and connected == scale.killed_clients,
        )
    )
    assert connected == scale.killed_clients, f"every client connected before it was killed: {said}"
    assert endless == [], "a sandbox whose client died runs until its ttl ends"
    if pods:
        await asyncio.to_thread(kubectl.run, "delete", "pods", "-l", f"tags.sandlot.dev/killed={tag}", "--wait=false")
