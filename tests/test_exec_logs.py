"""Exec and logs that never lose a byte, on a real cluster: large outputs,
stdin, exact exit codes, TTY sessions, concurrency, streaming, log follows,
and cancellation that leaves nothing running."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator

import pytest

import sandlot
from sandlot import _testing

BUSYBOX = "docker.io/library/busybox:1.36"
PYTHON = "docker.io/library/python:3.11-slim"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
async def box(sandlot_async_client: sandlot.AsyncClient) -> AsyncIterator[sandlot.AsyncSandbox]:
    """One running busybox sandbox shared by the exec tests, with room for large files."""
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, resources={"cpu": "1", "memory": "1Gi"})
    await sb.wait("running", timeout=120)
    yield sb
    await sb.terminate()


async def remote_sha256(box: sandlot.AsyncSandbox, path: str) -> str:
    result = await box.exec(["sha256sum", path], check=True)
    return result.stdout.split()[0]


async def test_100_mib_of_stdout_arrive_byte_identical(box: sandlot.AsyncSandbox) -> None:
    await box.exec(f"head -c {100 * MIB} /dev/urandom > /tmp/big", check=True)
    expected = await remote_sha256(box, "/tmp/big")
    result = await box.exec(["cat", "/tmp/big"], max_output=None)
    assert result.exit_code == 0
    assert len(result.stdout_bytes) == 100 * MIB
    assert hashlib.sha256(result.stdout_bytes).hexdigest() == expected
    await box.exec(["rm", "/tmp/big"], check=True)


async def test_10_mib_of_stderr_only_do_not_deadlock(box: sandlot.AsyncSandbox) -> None:
    await box.exec(f"head -c {10 * MIB} /dev/urandom > /tmp/err", check=True)
    expected = await remote_sha256(box, "/tmp/err")
    result = await box.exec("cat /tmp/err >&2")
    assert result.stdout_bytes == b""
    assert len(result.stderr_bytes) == 10 * MIB
    assert hashlib.sha256(result.stderr_bytes).hexdigest() == expected


async def test_10_mib_through_stdin_come_back_identical_and_reach_eof(box: sandlot.AsyncSandbox) -> None:
    data = hashlib.sha256(b"seed").digest() * (10 * MIB // 32)
    result = await box.exec("cat; echo EOF seen >&2", stdin=data)
    assert result.exit_code == 0
    assert result.stdout_bytes == data
    assert result.stderr == "EOF seen\n"


@pytest.mark.parametrize("code", [0, 1, 42])
async def test_exit_codes_are_exact(box: sandlot.AsyncSandbox, code: int) -> None:
    assert (await box.exec(f"exit {code}")).exit_code == code


async def test_a_killed_command_exits_137(box: sandlot.AsyncSandbox) -> None:
    assert (await box.exec("kill -9 $$")).exit_code == 137


async def test_silent_failure_and_output_without_newline(box: sandlot.AsyncSandbox) -> None:
    silent = await box.exec("exit 3")
    assert (silent.exit_code, silent.stdout_bytes, silent.stderr_bytes) == (3, b"", b"")
    partial = await box.exec(["printf", "no newline"])
    assert partial.stdout == "no newline"


async def test_env_workdir_and_check(box: sandlot.AsyncSandbox) -> None:
    result = await box.exec(["sh", "-c", 'echo "$GREETING from $(pwd)"'], env={"GREETING": "hi there"}, workdir="/etc")
    assert result.stdout == "hi there from /etc\n"
    with pytest.raises(sandlot.ExecError) as caught:
        await box.exec("echo partial; exit 5", check=True)
    assert caught.value.result is not None
    assert (caught.value.result.exit_code, caught.value.result.stdout) == (5, "partial\n")


async def test_undecodable_output_is_replaced_in_str_and_exact_in_bytes(box: sandlot.AsyncSandbox) -> None:
    result = await box.exec(["printf", "\\377ok"])
    assert result.stdout_bytes == b"\xffok"
    assert result.stdout == "\ufffdok"


async def test_timeout_raises_and_says_what(box: sandlot.AsyncSandbox) -> None:
    with pytest.raises(sandlot.TimeoutError) as caught:
        await box.exec(["sleep", "30"], timeout=1)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.after == 1.0


async def test_exec_on_a_sandbox_that_is_not_running(sandlot_async_client: sandlot.AsyncClient) -> None:
    done = await sandlot_async_client.sandboxes.create(BUSYBOX, command=["true"])
    await done.wait("succeeded", timeout=120)
    with pytest.raises(sandlot.SandboxNotRunningError) as caught:
        await done.exec(["true"])
    assert caught.value.phase == "succeeded"
    with pytest.raises(sandlot.SandboxNotRunningError):
        await done.spawn(["true"])


async def test_spawn_streams_output_as_it_is_written(box: sandlot.AsyncSandbox) -> None:
    async with await box.spawn("for i in 1 2 3; do echo line $i; sleep 0.2; done; echo oops >&2; exit 4") as proc:
        chunks = [chunk async for chunk in proc.stdout]
        assert len(chunks) >= 2, "output arrived in pieces, not all at the end"
        assert b"".join(chunks) == b"line 1\nline 2\nline 3\n"
        assert await proc.stderr.read_all() == b"oops\n"
        assert await proc.wait() == 4
        assert await proc.wait() == 4, "wait may be repeated"


async def test_cancelled_waits_for_output_lose_no_byte(box: sandlot.AsyncSandbox) -> None:
    # A line every few milliseconds, and waits for the next chunk cut short by
    # timeouts of about as long: some are cancelled while their chunk is on the way.
    script = "for i in $(seq 1 500); do echo $i; usleep 3000; done"
    async with await box.spawn(["sh", "-c", script]) as proc:
        received = bytearray()
        cancelled = 0
        while True:
            try:
                received += await asyncio.wait_for(
                    proc.stdout.__anext__(), timeout=(0.5, 1, 1.5, 2)[cancelled % 4] / 1000
                )
            except TimeoutError:
                cancelled += 1
            except StopAsyncIteration:
                break
        assert received.decode().split() == [str(i) for i in range(1, 501)]
        # Locally over 100; on a loaded machine output comes in larger bursts.
        assert cancelled > 5, "waits were cancelled"
        assert await proc.wait() == 0


async def test_spawn_with_stdin_written_in_pieces(box: sandlot.AsyncSandbox) -> None:
    proc = await box.spawn(["sh", "-c", "wc -c; echo done"], stdin=True)
    for _ in range(10):
        await proc.write(b"x" * 1000)
    await proc.write("and text\n")
    await proc.close_stdin()
    out = await proc.stdout.read_all()
    assert out.split() == [b"10009", b"done"]
    assert await proc.wait() == 0


async def test_tty_session_runs_a_shell_with_typed_input(box: sandlot.AsyncSandbox) -> None:
    proc = await box.spawn(["sh"], stdin=True, tty=True)
    proc.resize(120, 40)
    await proc.write("stty size; echo typed-$((40 + 2))\n")
    await proc.write("exit 7\n")
    output = await proc.stdout.read_all()
    assert b"40 120" in output
    assert b"typed-42" in output
    assert await proc.stderr.read_all() == b"", "a TTY merges stderr into stdout"
    assert await proc.wait() == 7


async def test_200_concurrent_execs_across_20_sandboxes(sandlot_async_client: sandlot.AsyncClient) -> None:
    sandboxes = await asyncio.gather(*(sandlot_async_client.sandboxes.create(BUSYBOX) for _ in range(20)))
    await sandlot_async_client.sandboxes.wait_all(sandboxes, "running", timeout=300)

    async def one(i: int) -> tuple[int, sandlot.ExecResult | sandlot.ExecError]:
        sb = sandboxes[i % 20]
        try:
            return i, await sb.exec(["sh", "-c", f"echo {i} $(hostname); exit {i % 7}"])
        except sandlot.ExecError as err:
            return i, err

    results = await asyncio.gather(*(one(i) for i in range(200)))
    # containerd 2 loses an exec's exit status now and then under such load
    # (and the API server then says success): sandlot raises ExecError for
    # those, and every result it returns is exact.
    unknown = [f"{i}: {result}" for i, result in results if isinstance(result, sandlot.ExecError)]
    assert len(unknown) <= 4, unknown
    assert all("may have run" in line for line in unknown), unknown
    for i, result in results:
        if isinstance(result, sandlot.ExecResult):
            assert result.stdout == f"{i} {sandboxes[i % 20].name}\n"
            assert result.exit_code == i % 7
    await sandlot_async_client.sandboxes.terminate_many(sandboxes)


async def test_follow_delivers_every_line_in_order_and_ends_with_the_sandbox(
    sandlot_async_client: sandlot.AsyncClient,
) -> None:
    sb = await sandlot_async_client.sandboxes.create(
        PYTHON, command=["sh", "-c", "sleep 2; seq 1 100000; printf tail-without-newline"]
    )
    lines = [line async for line in sb.stream_logs(follow=True)]
    assert lines[:100000] == [str(i) for i in range(1, 100001)]
    assert lines[100000:] == ["tail-without-newline"]
    assert (await sb.refresh()).phase == sandlot.Phase.SUCCEEDED, "the follow ended once the sandbox had"


async def test_every_line_written_just_before_the_exit_is_kept(sandlot_async_client: sandlot.AsyncClient) -> None:
    """The runtime copies a burst written right before the container exits into
    the log whole (containerd 1.6 lost the tail in about half the runs; the
    cluster's containerd 2.3 keeps it), so logs read after the end have it all."""
    client = sandlot_async_client
    sandboxes = [await client.sandboxes.create(BUSYBOX, command=["seq", "1", "100000"]) for _ in range(10)]
    await client.sandboxes.wait_all(sandboxes, "succeeded", timeout=300)
    expected = "".join(f"{i}\n" for i in range(1, 100001))
    kept = [await sb.logs() == expected for sb in sandboxes]
    assert kept == [True] * 10
    await client.sandboxes.purge(sandboxes)


async def test_stream_logs_without_follow_and_after_the_end(sandlot_async_client: sandlot.AsyncClient) -> None:
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, command=["sh", "-c", "echo a; echo b; echo c"])
    await sb.wait("succeeded", timeout=120)
    assert [line async for line in sb.stream_logs(follow=False)] == ["a", "b", "c"]
    assert [line async for line in sb.stream_logs(follow=False, tail=1)] == ["c"]
    assert [line async for line in sb.stream_logs()] == ["a", "b", "c"], "a follow of an ended sandbox ends"


async def settled_task_count() -> int:
    """The runtime's task count once the tasks of earlier tests have ended: the
    same for half a second (at most 10 s)."""
    last = _testing.runtime_task_count()
    for _ in range(20):
        await asyncio.sleep(0.5)
        now = _testing.runtime_task_count()
        if now == last:
            break
        last = now
    return last


async def test_cancelling_a_streaming_exec_leaves_nothing_running(box: sandlot.AsyncSandbox) -> None:
    baseline = await settled_task_count()
    proc = await box.spawn("while :; do echo tick; sleep 0.05; done")

    async def consume() -> None:
        async for _ in proc.stdout:
            pass

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(1)
    assert _testing.runtime_task_count() > baseline, "the exec runs a task while open"
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    proc.close()
    with pytest.raises(sandlot.ExecError):
        await proc.wait()
    for _ in range(50):
        if _testing.runtime_task_count() <= baseline:
            break
        await asyncio.sleep(0.1)
    assert _testing.runtime_task_count() <= baseline
    # The sandbox is still usable afterwards.
    assert (await box.exec(["echo", "still fine"])).stdout == "still fine\n"


async def test_close_ends_a_wait_that_is_already_waiting(box: sandlot.AsyncSandbox) -> None:
    proc = await box.spawn(["sleep", "300"])
    waiting = asyncio.ensure_future(proc.wait())
    await asyncio.sleep(0.5)
    assert not waiting.done()
    async with proc:
        pass  # leaving the block closes the connection
    with pytest.raises(sandlot.ExecError, match="closed") as raised:
        await asyncio.wait_for(waiting, timeout=10)
    assert raised.value.name == box.name


async def test_a_failing_iterable_of_names_raises_its_own_error(sandlot_async_client: sandlot.AsyncClient) -> None:
    def names() -> Iterator[str]:
        yield "a"
        raise LookupError("the caller's own failure")

    with pytest.raises(LookupError, match="own failure"):
        await sandlot_async_client.sandboxes.terminate_many(names())
    with pytest.raises(sandlot.InvalidSpecError) as raised:
        await sandlot_async_client.sandboxes.terminate_many([1, 2])  # type: ignore[list-item]
    assert raised.value.field == "names"


async def test_a_log_with_undecodable_bytes_reads_as_text_and_as_exact_bytes(
    sandlot_async_client: sandlot.AsyncClient,
) -> None:
    sb = await sandlot_async_client.sandboxes.create(BUSYBOX, command=["printf", "ok\\377ok\\n"])
    await sb.wait("succeeded", timeout=120)
    assert await sb.logs() == "ok\ufffdok\n"
    assert await sb.logs_bytes() == b"ok\xffok\n"
