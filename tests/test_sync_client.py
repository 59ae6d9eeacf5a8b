"""The blocking client: the same operations as the async one, usable from
scripts and notebooks, with Ctrl-C turning into KeyboardInterrupt."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

import sandlot
from sandlot import _testing

BUSYBOX = "docker.io/library/busybox:1.36"


def test_main_path_without_async(sandlot_namespace: str) -> None:
    with sandlot.Client(sandlot_namespace) as client:
        volume = client.volumes.create(f"v-{uuid.uuid4().hex[:6]}", size="16Mi")
        with client.sandboxes.create(BUSYBOX, tags={"sync": "yes"}, volume_mounts={"/v": volume.name}) as sb:
            assert sb.wait("running", timeout=120).phase == sandlot.Phase.RUNNING
            assert sb.exec("echo hi > /v/f; cat /v/f").stdout == "hi\n"
            with sb.spawn(["sh", "-c", "cat; echo err >&2"], stdin=True) as proc:
                proc.write(b"round trip\n")
                proc.close_stdin()
                assert b"".join(proc.stdout) == b"round trip\n"
                assert proc.read_stderr() == b"err\n"
                assert proc.wait() == 0
            listed = client.sandboxes.list(tags={"sync": "yes"})
            assert [s.name for s in listed] == [sb.name]
            assert "<table>" in listed._repr_html_()
        assert sb.refresh().phase == sandlot.Phase.TERMINATED, "leaving the block terminated it"
        job = client.sandboxes.create(BUSYBOX, command=["sh", "-c", "echo 1; echo 2"])
        assert list(job.stream_logs()) == ["1", "2"]
        assert job.wait("succeeded").exit_code == 0
        statuses = client.sandboxes.wait_all([job], ["succeeded"], timeout=10)
        assert statuses[0].exit_code == 0
        assert [r.terminated for r in client.sandboxes.terminate_many([sb])] == [True]
        client.volumes.delete(volume.name)
        with pytest.raises(sandlot.NotFoundError):
            client.sandboxes.get(sb.name)  # purged with the volume it mounted


CTRL_C_SCRIPT = """
import signal, sys, time
import sandlot
from sandlot import _testing

client = sandlot.Client(sys.argv[1])
sb = client.sandboxes.create(sys.argv[2])
sb.wait("running", timeout=120)  # the shared watch is up from here on
baseline = _testing.runtime_task_count()
for _ in range(3):
    print("waiting", flush=True)
    try:
        sb.wait("succeeded", timeout=120)  # an idle sandbox never gets there
    except KeyboardInterrupt:
        print(f"interrupted {time.monotonic()}", flush=True)
    else:
        sys.exit(1)
time.sleep(0.2)
print(f"tasks {_testing.runtime_task_count() - baseline}", flush=True)
sb.terminate()
"""


def test_ctrl_c_on_a_blocked_wait_raises_keyboard_interrupt_at_once_and_leaves_no_task(sandlot_namespace: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT, sandlot_namespace, BUSYBOX],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    assert proc.stdout is not None
    delays = []
    for _ in range(3):
        assert proc.stdout.readline() == "waiting\n"
        time.sleep(0.5)  # well inside the blocked wait
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        word, at = proc.stdout.readline().split()
        assert word == "interrupted"
        delays.append(float(at) - sent)
    assert proc.stdout.readline() == "tasks 0\n", "the interrupted waits left native tasks behind"
    assert proc.wait(timeout=60) == 0
    assert sorted(delays)[1] < 0.1, f"KeyboardInterrupt came {delays} s after Ctrl-C"


async def test_the_sync_client_works_where_an_event_loop_runs(sandlot_namespace: str) -> None:
    """A notebook cell runs inside a running loop: blocking calls must still work."""
    asyncio.get_running_loop()
    with sandlot.Client(sandlot_namespace) as client:
        assert isinstance(client.sandboxes.list(), sandlot.SandboxList)
        assert _testing.yield_once(blocking=True) is None


EXIT_SCRIPT = """
import asyncio, sys
import sandlot

async def main() -> None:
    client = sandlot.AsyncClient(sys.argv[1])
    await client.connect()
    # Calls nobody awaits: their results arrive while the interpreter exits.
    for _ in range(200):
        asyncio.ensure_future(client.sandboxes.list())
    await asyncio.sleep(0)

asyncio.run(main())
print("exited", flush=True)
"""


def test_exiting_with_calls_in_flight_is_clean(sandlot_namespace: str) -> None:
    for _ in range(5):
        proc = subprocess.run(
            [sys.executable, "-c", EXIT_SCRIPT, sandlot_namespace],
            capture_output=True,
            text=True,
            env=os.environ,
            timeout=120,
        )
        assert (proc.returncode, proc.stdout) == (0, "exited\n"), proc.stderr[-2000:]
