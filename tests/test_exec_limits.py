"""Exec within bounds, on a real cluster: output kept up to `max_output`, the
remote process killed on timeout and on cancellation (nothing left running in
the sandbox), partial output carried by the timeout error, and stdin that a
command never reads never holding up its exit code."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import pytest

import sandlot

BUSYBOX = "docker.io/library/busybox:1.36"
PAUSE = "registry.k8s.io/pause:3.10.1"  # one static binary, no shell
MIB = 1024 * 1024
# A bounded wait for what should come back at once: the test fails, not hangs.
PROMPTLY = 60


@pytest.fixture(scope="module")
async def box(sandlot_async_client: sandlot.AsyncClient) -> AsyncIterator[sandlot.AsyncSandbox]:
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, resources={"cpu": "1", "memory": "512Mi"})
    await sb.wait("running", timeout=120)
    yield sb
    await sb.terminate()


async def live_commands(box: sandlot.AsyncSandbox) -> list[str]:
    """The command lines of the processes alive in the sandbox (zombies left out)."""
    listing = await box.exec(
        'for p in /proc/[0-9]*; do s=$(cat $p/stat 2>/dev/null) || continue; case "$s" in *") Z "*) continue;; esac;'
        ' tr "\\0" " " < $p/cmdline 2>/dev/null; echo; done',
        check=True,
    )
    return [line.strip() for line in listing.stdout.splitlines() if line.strip()]


async def gone(box: sandlot.AsyncSandbox, command: str, within: float = 30) -> bool:
    """Whether no process runs `command` in the sandbox, waiting at most `within` seconds."""
    for _ in range(int(within / 0.5)):
        if command not in await live_commands(box):
            return True
        await asyncio.sleep(0.5)
    return False


async def test_output_beyond_max_output_is_drained_and_dropped(box: sandlot.AsyncSandbox) -> None:
    result = await box.exec(f"yes | head -c {64 * MIB}; echo done >&2", max_output=MIB, timeout=PROMPTLY)
    assert result.exit_code == 0
    assert result.truncated
    assert len(result.stdout_bytes) == MIB
    assert result.stdout_bytes[:4] == b"y\ny\n"
    assert result.stderr == "done\n", "the other stream is whole"
    whole = await box.exec("yes | head -c 1000", max_output=1000)
    assert (len(whole.stdout_bytes), whole.truncated) == (1000, False)


async def test_the_default_bound_keeps_16_mib_of_a_stream(box: sandlot.AsyncSandbox) -> None:
    result = await box.exec(f"yes | head -c {40 * MIB}", timeout=PROMPTLY)
    assert (len(result.stdout_bytes), result.truncated) == (16 * MIB, True)
    unbounded = await box.exec(f"yes | head -c {20 * MIB}", max_output=None, timeout=PROMPTLY)
    assert (len(unbounded.stdout_bytes), unbounded.truncated) == (20 * MIB, False)


async def test_max_output_is_checked_before_any_request(box: sandlot.AsyncSandbox) -> None:
    with pytest.raises(sandlot.InvalidSpecError) as raised:
        await box.exec("true", max_output=-1)
    assert raised.value.field == "max_output"


async def test_a_timeout_kills_the_command_and_carries_its_output_so_far(box: sandlot.AsyncSandbox) -> None:
    with pytest.raises(sandlot.TimeoutError) as caught:
        await box.exec("echo before; echo warn >&2; sleep 301", timeout=3)
    assert (caught.value.stdout, caught.value.stderr) == ("before\n", "warn\n")
    assert (caught.value.stdout_bytes, caught.value.truncated) == (b"before\n", False)
    assert "sleep 301" not in await live_commands(box), "the timeout returned before the kill was done"


async def test_a_timeout_kills_the_whole_process_group(box: sandlot.AsyncSandbox) -> None:
    with pytest.raises(sandlot.TimeoutError) as caught:
        await box.exec("sleep 302 & sleep 303 & yes", timeout=3, max_output=1000)
    assert caught.value.stdout_bytes is not None
    assert len(caught.value.stdout_bytes) == 1000
    assert caught.value.truncated
    left = await live_commands(box)
    assert not any(c in left for c in ["sleep 302", "sleep 303", "yes"]), left


async def test_cancelling_an_exec_kills_the_command(box: sandlot.AsyncSandbox) -> None:
    task = asyncio.ensure_future(box.exec(["sleep", "304"]))
    for _ in range(60):
        if "sleep 304" in await live_commands(box):
            break
        await asyncio.sleep(0.5)
    else:
        pytest.fail("the command never started")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await gone(box, "sleep 304"), "the cancelled command kept running"


@pytest.mark.parametrize("size", [MIB, 8 * MIB])
async def test_unread_stdin_does_not_hold_up_the_exit_code(box: sandlot.AsyncSandbox, size: int) -> None:
    # Unread input left in the server's pipes could hang the exec or turn its
    # exit status into a false 0 without the stderr (1 MiB did that, 8 MiB hung).
    for _ in range(3):
        result = await box.exec("echo err >&2; exit 3", stdin=b"x" * size, timeout=PROMPTLY)
        assert (result.exit_code, result.stderr) == (3, "err\n")


async def test_a_process_that_exited_refuses_writes_at_once(box: sandlot.AsyncSandbox) -> None:
    proc = await box.spawn("echo err >&2; exit 3", stdin=True)
    assert await asyncio.wait_for(proc.wait(), PROMPTLY) == 3
    with pytest.raises(BrokenPipeError):
        await asyncio.wait_for(proc.write(b"x" * (8 * MIB)), PROMPTLY)
    await asyncio.wait_for(proc.close_stdin(), PROMPTLY)
    assert await proc.stderr.read_all() == b"err\n"


def test_sync_exec_within_bounds(sandlot_namespace: str) -> None:
    with sandlot.Client(sandlot_namespace) as client, client.sandboxes.create(BUSYBOX) as sb:
        sb.wait("running", timeout=120)
        result = sb.exec("echo err >&2; exit 3", stdin=b"x" * (8 * MIB), timeout=PROMPTLY)
        assert (result.exit_code, result.stderr) == (3, "err\n")
        with pytest.raises(sandlot.TimeoutError) as caught:
            sb.exec("echo before; sleep 305", timeout=3)
        assert caught.value.stdout == "before\n"
        assert "sleep 305" not in sb.exec("ps -o args").stdout
        proc = sb.spawn("exit 3", stdin=True)
        assert proc.wait() == 3
        with pytest.raises(BrokenPipeError):
            proc.write(b"x" * (8 * MIB))
        proc.close_stdin()


CTRL_C_SCRIPT = """
import sys
import sandlot

client = sandlot.Client(sys.argv[1])
sb = client.sandboxes.get(sys.argv[2])
print("exec", flush=True)
try:
    sb.exec(["sleep", "306"])
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


async def test_ctrl_c_on_a_sync_exec_kills_the_command(sandlot_namespace: str, box: sandlot.AsyncSandbox) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CTRL_C_SCRIPT, sandlot_namespace, box.name, stdout=asyncio.subprocess.PIPE, env=os.environ
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), PROMPTLY) == b"exec\n"
        for _ in range(60):
            if "sleep 306" in await live_commands(box):
                break
            await asyncio.sleep(0.5)
        else:
            pytest.fail("the command never started")
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.stdout.readline(), PROMPTLY) == b"interrupted\n"
        assert await asyncio.wait_for(proc.wait(), PROMPTLY) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert await gone(box, "sleep 306"), "the interrupted command kept running"


async def test_an_image_without_a_shell_still_runs_commands(
    sandlot_async_client: sandlot.AsyncClient, sandlot_namespace: str
) -> None:
    """Through the agent (the default) a shell-less image runs commands like any
    other; through Kubernetes exec, without /bin/sh for the tagging wrapper, the
    command runs as given (and cannot be killed)."""
    sb = await sandlot_async_client.sandboxes.create(PAUSE, command=["/pause"])
    await sb.wait("running", timeout=120)
    with pytest.raises(sandlot.TimeoutError):
        await sb.exec(["/pause"], timeout=2)  # ran: no shell was needed
    missing = await sb.exec(["/no-such-program"])
    assert (missing.exit_code, missing.path) == (127, "agent")
    assert "no-such-program" in missing.stderr
    async with sandlot.AsyncClient(sandlot_namespace, exec_path="kubernetes") as kube:
        direct = await kube.sandboxes.get(sb.name)
        with pytest.raises(sandlot.TimeoutError):
            await direct.exec(["/pause"], timeout=2)
        with pytest.raises(sandlot.ExecError, match="no-such-program"):
            await direct.exec(["/no-such-program"])
    await sb.terminate()
