"""The blocking client: the same operations as the async one, usable from
scripts and notebooks, with Ctrl-C turning into KeyboardInterrupt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

import sandlot
from conftest import Kubectl

BUSYBOX = "docker.io/library/busybox:1.36"


@pytest.fixture(scope="module")
def namespace(kubeconfig: str) -> Iterator[str]:
    name = f"sandlot-sync-{uuid.uuid4().hex[:8]}"
    yield name
    Kubectl().run("delete", "namespace", name, "--wait=false", check=False)


def test_main_path_without_async(namespace: str) -> None:
    with sandlot.Client(namespace) as client:
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


def test_ctrl_c_while_waiting_raises_keyboard_interrupt(namespace: str) -> None:
    script = (
        "import sandlot, sys\n"
        f"client = sandlot.Client({namespace!r})\n"
        f"sb = client.sandboxes.create({BUSYBOX!r})\n"
        "print('waiting', flush=True)\n"
        "try:\n"
        "    sb.wait('succeeded', timeout=120)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    sb.terminate()\n"
        "    sys.exit(42)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "waiting\n"
    time.sleep(1)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 42
    assert proc.stdout.read() == "interrupted\n"
    assert time.monotonic() - started < 60
