"""Log follows on a real cluster that lose nothing, repeat nothing and end when
the sandbox does: fast writers, follows that have to ask again after a silent
connection, `tail` and `since` follows, undecodable bytes, and log rotation by
the kubelet. (Connections that end, break or go silent on their own, and a
rotated log file, are staged with a scripted API server in the core's unit
tests: `rust/sandlot-core/src/sandbox/logs.rs`.)"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import sandlot
from sandlot import _testing

BUSYBOX = "docker.io/library/busybox:1.36"
PYTHON = "docker.io/library/python:3.11-slim"
SANDLOT = shutil.which("sandlot", path=str(Path(sys.executable).parent)) or "sandlot"


@pytest.fixture
def short_idle() -> Iterator[None]:
    """Follows started in the test ask again after 0.2 s of silence (the default is 30 s)."""
    _testing.set_follow_idle(0.2)
    yield
    _testing.set_follow_idle(30)


async def test_a_fast_writer_is_followed_without_a_line_lost_or_repeated(
    sandlot_async_client: sandlot.AsyncClient,
) -> None:
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, command=["sh", "-c", "sleep 1; seq 1 100000"])
    lines = [line async for line in sb.stream_logs(follow=True)]
    assert len(lines) == 100000
    assert lines == [str(i) for i in range(1, 100001)]


async def test_a_follow_that_asks_again_after_each_silence_repeats_no_line(
    sandlot_async_client: sandlot.AsyncClient, short_idle: None
) -> None:
    # Bursts of 5000 lines with pauses longer than the follow's idle time: after
    # each, the follow gives its connection up and asks again from the second of
    # the last line it delivered, which the kubelet sends again.
    script = "for b in $(seq 0 19); do seq $((b * 5000 + 1)) $((b * 5000 + 5000)); sleep 0.5; done"
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, command=["sh", "-c", script])
    lines = [line async for line in sb.stream_logs(follow=True)]
    assert len(lines) == 100000
    assert lines == [str(i) for i in range(1, 100001)]


async def test_tail_and_since_follows_get_the_lines_written_last(sandlot_async_client: sandlot.AsyncClient) -> None:
    sb = await sandlot_async_client.sandboxes.create(
        BUSYBOX, command=["sh", "-c", "seq 1 5; sleep 6; seq 6 20000; sleep 1; printf last"]
    )
    await sb.wait("running", timeout=120)
    await asyncio.sleep(1)  # lines 1 to 5 are written
    tail = sb.stream_logs(follow=True, tail=2)
    since = sb.stream_logs(follow=True, since=600)
    tail_lines, since_lines = await asyncio.gather(
        asyncio.wait_for(collect(tail), timeout=120), asyncio.wait_for(collect(since), timeout=120)
    )
    assert tail_lines == [str(i) for i in range(4, 20001)] + ["last"]
    assert since_lines == [str(i) for i in range(1, 20001)] + ["last"]


async def test_a_follow_ends_once_the_sandbox_is_terminated(sandlot_async_client: sandlot.AsyncClient) -> None:
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, command=["sh", "-c", "echo up; exec sleep 3600"])
    await sb.wait("running", timeout=120)
    lines: list[str] = []

    async def follow() -> None:
        async for line in sb.stream_logs(follow=True):
            lines.append(line)

    following = asyncio.create_task(follow())
    for _ in range(600):  # the first line arrives
        if lines:
            break
        await asyncio.sleep(0.1)
    await sb.terminate()
    # Bounded so that a follow that never ends fails the test instead of hanging it.
    await asyncio.wait_for(following, timeout=60)
    assert lines == ["up"]


async def test_undecodable_bytes_follow_as_replacement_characters(sandlot_async_client: sandlot.AsyncClient) -> None:
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, command=["sh", "-c", "printf 'ok\\377ok\\nnext\\n'"])
    assert [line async for line in sb.stream_logs(follow=True)] == ["ok\ufffdok", "next"]


async def test_the_cli_follows_into_a_pipe_with_the_bytes_as_written(
    sandlot_async_client: sandlot.AsyncClient, sandlot_namespace: str
) -> None:
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, command=["sh", "-c", "printf 'ok\\377ok\\nnext'"])
    follower = await asyncio.create_subprocess_exec(
        SANDLOT, "--namespace", sandlot_namespace, "logs", sb.name, "-f", stdout=subprocess.PIPE, env=os.environ
    )
    piped, _ = await asyncio.wait_for(follower.communicate(), timeout=120)
    assert follower.returncode == 0
    assert piped == b"ok\xffok\nnext\n"


def test_a_sync_follow_reads_the_same_lines(sandlot_client: sandlot.Client) -> None:
    sb = sandlot_client.sandboxes.create(BUSYBOX, command=["sh", "-c", "sleep 1; seq 1 20000; sleep 1"])
    assert list(sb.stream_logs(follow=True)) == [str(i) for i in range(1, 20001)]


async def test_a_follow_goes_on_across_log_rotation(sandlot_async_client: sandlot.AsyncClient) -> None:
    # The kubelet rotates a container's log file once it is past 10 MiB (its
    # default containerLogMaxSize, checked every 10 s): about 30 MiB written
    # over 30 s rotate it at least once while the follow reads.
    script = (
        "import sys, time\n"
        "for burst in range(30):\n"
        "    sys.stdout.write(''.join(f'{burst * 1000 + i:08d} ' + 'x' * 1000 + '\\n' for i in range(1000)))\n"
        "    sys.stdout.flush()\n"
        "    time.sleep(1)\n"
    )
    sb = await sandlot_async_client.sandboxes.create(
        PYTHON, command=["python", "-c", script], resources={"cpu": "500m", "memory": "256Mi"}
    )
    numbers = [line.split(" ", 1)[0] async for line in sb.stream_logs(follow=True)]
    assert len(numbers) == 30000
    assert numbers == [f"{i:08d}" for i in range(30000)]


async def test_cancelled_waits_for_a_line_lose_and_repeat_none(sandlot_async_client: sandlot.AsyncClient) -> None:
    # A line every few milliseconds, and waits for the next one cut short by
    # timeouts of about as long: some are cancelled while their line is on the way.
    sb = await sandlot_async_client.sandboxes.create(
        BUSYBOX, command=["sh", "-c", "sleep 1; for i in $(seq 1 500); do echo $i; usleep 3000; done; sleep 1"]
    )
    stream = sb.stream_logs(follow=True)
    lines: list[str] = []
    cancelled = 0
    while True:
        try:
            lines.append(await asyncio.wait_for(stream.__anext__(), timeout=(1, 2, 3, 4)[cancelled % 4] / 1000))
        except TimeoutError:
            cancelled += 1
        except StopAsyncIteration:
            break
    assert lines == [str(i) for i in range(1, 501)]
    assert cancelled > 100, "most waits were cancelled"


async def collect(stream: sandlot.LineStream) -> list[str]:
    return [line async for line in stream]
