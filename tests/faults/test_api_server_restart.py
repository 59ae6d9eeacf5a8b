"""The API server killed and started again while sandlot waits, execs and
follows: nothing missed, nothing misreported, nothing left running."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import sandlot
from conftest import ADMIN_KUBECONFIG
from test_network import PYTHON
from test_ports import PORT, SERVER, get

from .conftest import Row, Scale
from .harness import (
    BUSYBOX,
    WHILE_API_ANSWERS,
    client_through,
    compact_etcd,
    delete_tagged,
    etcd_call,
    percentile,
    pod_room,
    processes_in,
    restart_api_server,
    wait_for_processes,
)
from .proxy import FaultProxy

# A wait gets this long; a restart takes seconds, so a timeout is a missed transition.
WAIT_TIMEOUT = 300.0
# An exec of `sleep 5` gets this long: time for the restart and more.
EXEC_TIMEOUT = 30.0
# Setting up (sandboxes starting) may be slow on a busy node; a bound for hangs only.
START_TIMEOUT = 300
MIB = 1024 * 1024


class WaitOutcome:
    """What waiting on sandboxes whose commands end while the API server is away gave."""

    def __init__(self, expected: dict[str, int], results: list[tuple[str, object, float]], back_at: float):
        self.missed: list[str] = []  # timed out or wrong phase or exit code
        self.errors: list[str] = []  # any other exception
        self.delays: list[float] = []  # seconds from the API server being back to the wait returning
        for name, result, returned_at in results:
            code = expected[name]
            if isinstance(result, sandlot.SandboxStatus):
                want = (sandlot.Phase.SUCCEEDED if code == 0 else sandlot.Phase.FAILED, code)
                if (result.phase, result.exit_code) != want:
                    self.missed.append(f"{name}: {result.phase}/{result.exit_code}, want {want[0]}/{code}")
                else:
                    self.delays.append(max(0.0, returned_at - back_at))
            elif isinstance(result, TimeoutError):
                self.missed.append(f"{name}: timed out")
            else:
                self.errors.append(f"{name}: {type(result).__name__}: {result}")

    def summary(self, count: int) -> str:
        kinds = Counter(e.split(": ", 2)[1] for e in self.errors)
        errors = ", ".join(f"{n} {k}" for k, n in kinds.items()) or "0"
        return f"transitions missed {len(self.missed)}/{count} (want 0); wait errors {errors} (want 0)"


async def sandboxes_ending_when_the_api_server_goes(
    client: sandlot.AsyncClient, count: int, tag: str
) -> tuple[list[sandlot.AsyncSandbox], dict[str, int]]:
    """`count` running sandboxes whose commands end (exit 0, 1 or 2) once the
    API server stops answering at the node address."""
    sandboxes = await asyncio.gather(
        *(
            client.sandboxes.create(
                BUSYBOX,
                command=["sh", "-c", WHILE_API_ANSWERS],
                env={"CODE": str(i % 3)},
                # It polls the API server at the node address, which every
                # restricted network denies (the local cluster enforces them).
                network="unrestricted",
                tags={"fault": tag},
                resources={"cpu": "5m", "memory": "16Mi"},
            )
            for i in range(count)
        )
    )
    await client.sandboxes.wait_all(sandboxes, "running", timeout=900)
    return list(sandboxes), {sb.name: i % 3 for i, sb in enumerate(sandboxes)}


async def wait_through(
    sandboxes: list[sandlot.AsyncSandbox], fault: Callable[[], float]
) -> tuple[list[tuple[str, object, float]], float]:
    """Waits on every sandbox to end while `fault` runs (on a thread; it returns
    when the API server was back); returns each wait's result and return time,
    and when the API server was back."""

    async def one(sb: sandlot.AsyncSandbox) -> tuple[str, object, float]:
        try:
            result: object = await sb.wait(["succeeded", "failed"], timeout=WAIT_TIMEOUT)
        except Exception as err:
            result = err
        return sb.name, result, time.monotonic()

    waits = [asyncio.ensure_future(one(sb)) for sb in sandboxes]
    await asyncio.sleep(1)  # every wait is registered with the watch
    back_at = await asyncio.to_thread(fault)
    return list(await asyncio.gather(*waits)), back_at


async def test_waits_survive_an_api_server_restart(
    sandlot_namespace: str, scale: Scale, record: Callable[[Row], None]
) -> None:
    # Other pods on the node may leave too little room: then fewer, and said so (and the test fails).
    count = min(scale.waiters, await asyncio.to_thread(pod_room) - 5)
    try:
        async with sandlot.AsyncClient(sandlot_namespace) as client:
            sandboxes, expected = await sandboxes_ending_when_the_api_server_goes(client, count, "restart")
            started = time.monotonic()
            results, back_at = await wait_through(sandboxes, lambda: restart_api_server(down_seconds=5))
            outcome = WaitOutcome(expected, results, back_at)
            record(
                Row(
                    "API server restarted while sandboxes are waited on",
                    f"{count} waits"
                    + (f" (of {scale.waiters}: the node had room for no more)" if count < scale.waiters else "")
                    + f", 1 restart (killed, {back_at - started:.0f} s away)",
                    outcome.summary(count),
                    f"p50 {percentile(outcome.delays, 50):.1f} s, p99 {percentile(outcome.delays, 99):.1f} s "
                    "from the API server ready to the wait returning",
                    not outcome.missed and not outcome.errors,
                )
            )
            assert outcome.missed == []
            assert outcome.errors == []
            assert count == scale.waiters, f"the node had room for {count} sandboxes, not {scale.waiters}"
    finally:
        await asyncio.to_thread(delete_tagged, sandlot_namespace, "fault", "restart")


async def test_a_watch_answered_410_gone_recovers(
    sandlot_namespace: str, scale: Scale, record: Callable[[Row], None], tmp_path: Path
) -> None:
    """While the API server is away, etcd moves on and is compacted, so the
    watch's resourceVersion is gone when it comes back: 410 Gone."""
    proxy = FaultProxy(ADMIN_KUBECONFIG, tmp_path)
    try:
        async with client_through(proxy.write_kubeconfig(tmp_path / "proxy.kubeconfig"), sandlot_namespace) as client:
            sandboxes, expected = await sandboxes_ending_when_the_api_server_goes(client, scale.waiters_410, "gone")

            def restart_with_compaction() -> float:
                done: list[float] = []
                restart = threading.Thread(target=lambda: done.append(restart_api_server(down_seconds=6)))
                restart.start()
                time.sleep(3)  # the API server is away: history moves on, then is compacted
                etcd_call("/v3/kv/put", {"key": "L3NhbmRsb3QtZmF1bHRz", "value": "MQ=="})  # /sandlot-faults
                compact_etcd()
                restart.join(timeout=240)
                return done[0]

            results, _ = await wait_through(sandboxes, restart_with_compaction)
            outcome = WaitOutcome(expected, results, 0.0)
            expired = proxy.expired_answers()
            record(
                Row(
                    "etcd compaction: 410 Gone on the watch",
                    f"{scale.waiters_410} waits, 1 restart with etcd compacted meanwhile; "
                    f"410 answers seen by the client: {expired}",
                    outcome.summary(scale.waiters_410),
                    "relist after 410" if not outcome.missed else "waits did not recover",
                    not outcome.missed and not outcome.errors and expired > 0,
                )
            )
            assert expired > 0, "the fault was staged: the client's watch was answered 410 Gone"
            assert outcome.missed == []
            assert outcome.errors == []
    finally:
        proxy.close()
        await asyncio.to_thread(delete_tagged, sandlot_namespace, "fault", "gone")


async def test_execs_survive_an_api_server_restart(
    sandlot_namespace: str, scale: Scale, record: Callable[[Row], None]
) -> None:
    async with sandlot.AsyncClient(sandlot_namespace) as client:
        box = await client.sandboxes.create(BUSYBOX)
        await box.wait("running", timeout=START_TIMEOUT)

        async def one() -> object:
            try:
                return await box.exec("sleep 5; exit 7", timeout=EXEC_TIMEOUT)
            except Exception as err:
                return err

        execs = [asyncio.ensure_future(one()) for _ in range(scale.execs)]
        # Killed once half the commands run: execs start one by one, and the first end after 5 s.
        started = await asyncio.to_thread(
            wait_for_processes, sandlot_namespace, box.name, "sleep 5", max(1, scale.execs // 2), 30, at_least=True
        )
        back_at = await asyncio.to_thread(restart_api_server)
        results = await asyncio.gather(*execs)
        returned_at = time.monotonic()
        left = await asyncio.to_thread(processes_in, sandlot_namespace, box.name, "sleep 5")
        wrong = [r.exit_code for r in results if isinstance(r, sandlot.ExecResult) and r.exit_code != 7]
        errors = Counter(type(r).__name__ for r in results if isinstance(r, BaseException))
        right = sum(1 for r in results if isinstance(r, sandlot.ExecResult) and r.exit_code == 7)
        # The command takes 5 s; an exec still open at its timeout missed that its connection died.
        hung = errors["TimeoutError"]
        record(
            Row(
                "API server restarted during execs",
                f"{scale.execs} execs of `sleep 5; exit 7` ({started} running when killed), 1 restart",
                f"exit 7: {right}; wrong exit codes {len(wrong)} (want 0); hung until their {EXEC_TIMEOUT:.0f} s timeout {hung} "
                "(want 0); errors "
                + (", ".join(f"{n} {k}" for k, n in errors.items()) or "0")
                + f"; remote processes left when the calls returned {left} (want 0)",
                f"last exec returned {max(0.0, returned_at - back_at):.1f} s after the API server was ready",
                not wrong and not hung and left == 0,
            )
        )
        await box.terminate()
        assert started > 0, "the fault was staged: commands ran when the API server was killed"
        assert wrong == []
        assert hung == 0, "a lost connection ends the exec with an error, not at its timeout"
        assert left == 0


async def test_a_follow_survives_an_api_server_restart(
    sandlot_namespace: str, scale: Scale, record: Callable[[Row], None]
) -> None:
    batches = 50
    per_batch = scale.follow_lines // batches
    async with sandlot.AsyncClient(sandlot_namespace) as client:
        writer = await client.sandboxes.create(
            BUSYBOX,
            command=[
                "sh",
                "-c",
                f"for b in $(seq 0 {batches - 1}); do seq $((b*{per_batch}+1)) $((b*{per_batch}+{per_batch})); "
                "sleep 0.3; done",
            ],
        )
        lines: list[str] = []

        async def follow() -> BaseException | None:
            try:
                async for line in writer.stream_logs(follow=True):
                    lines.append(line)
            except Exception as err:
                return err
            return None

        await writer.wait("running", timeout=START_TIMEOUT)
        follower = asyncio.ensure_future(follow())
        for _ in range(600):  # the follow is under way: a fifth of the lines in
            if len(lines) >= scale.follow_lines // 5 or follower.done():
                break
            await asyncio.sleep(0.1)
        before_restart = len(lines)
        back_at = await asyncio.to_thread(restart_api_server)
        try:
            error = await asyncio.wait_for(follower, 300)
        except TimeoutError as err:
            error = err
        ended_at = time.monotonic()
        expected = [str(i) for i in range(1, scale.follow_lines + 1)]
        counts = Counter(lines)
        lost = sum(1 for line in expected if line not in counts)
        duplicated = sum(n - 1 for n in counts.values() if n > 1)
        record(
            Row(
                "API server restarted during a follow",
                f"1 follow of {scale.follow_lines} lines written over ~{batches * 0.3:.0f} s, 1 restart "
                f"after {before_restart} lines",
                f"lines lost {lost} (want 0), duplicated {duplicated} (want 0)"
                + (f"; the follow failed: {type(error).__name__}: {error}" if error else ""),
                f"follow ended {ended_at - back_at:.1f} s after the API server was ready",
                lost == 0 and duplicated == 0 and error is None,
            )
        )
        assert 0 < before_restart < scale.follow_lines, "the restart fell inside the follow"
        assert error is None
        assert (lost, duplicated) == (0, 0)


async def test_a_port_forward_survives_an_api_server_restart(
    sandlot_namespace: str, record: Callable[[Row], None]
) -> None:
    """Connections made while the API server is away fail at once (none
    hangs); the forward keeps listening, and connections work again once the
    API server is back."""
    async with sandlot.AsyncClient(sandlot_namespace) as client:
        server = await client.sandboxes.create(
            PYTHON, command=["python3", "-c", SERVER, str(PORT)], tags={"fault": "forward"}
        )
        try:
            await server.wait("running", timeout=START_TIMEOUT)
            await server.wait_for_port(PORT, timeout=60)
            async with server.port_forward(PORT) as fwd:
                assert (await asyncio.to_thread(get, fwd.url))[0] == 200
                outcomes: list[tuple[float, float, bool]] = []  # (started, seconds, answered 200)
                restart = asyncio.ensure_future(asyncio.to_thread(restart_api_server, 5))

                async def one() -> None:
                    started = time.monotonic()
                    try:
                        answered = (await asyncio.to_thread(get, fwd.url, 20.0))[0] == 200
                    except OSError:
                        answered = False
                    outcomes.append((started, time.monotonic() - started, answered))

                while not restart.done():
                    await one()
                    await asyncio.sleep(0.2)
                back_at = await restart
                while not (outcomes and outcomes[-1][2]) and time.monotonic() - back_at < 60:
                    await one()
                    await asyncio.sleep(0.2)
                failed = sum(1 for _, _, ok in outcomes if not ok)
                slowest = max(seconds for _, seconds, _ in outcomes)
                recovered = outcomes[-1][2]
                first_after = next((s - back_at for s, _, ok in outcomes if ok and s >= back_at), None)
                record(
                    Row(
                        "API server restarted while a port-forward runs",
                        f"1 forward, GETs every 0.2 s through 1 restart (killed, 5 s away); {len(outcomes)} GETs",
                        f"{failed} failed while it was away, slowest {slowest:.1f} s (want < 20: none hangs); "
                        f"forward still listening: {fwd.running}",
                        "first 200 "
                        + (
                            f"{first_after:.1f} s after the API server was ready"
                            if first_after is not None
                            else "never"
                        ),
                        recovered and fwd.running and slowest < 20,
                    )
                )
                assert recovered, "no GET through the forward succeeded after the restart"
                assert fwd.running
                assert slowest < 20, "a connection hung while the API server was away"
        finally:
            await server.terminate()


async def test_file_transfers_across_an_api_server_restart(
    sandlot_namespace: str, record: Callable[[Row], None]
) -> None:
    """An upload and a download under way when the API server restarts: each
    ends intact or with an error soon after it is back (none hangs), a failed
    upload leaves nothing under its name and no temporary file, no file run
    is left in the sandbox, and the next transfer works."""
    chunk = os.urandom(MIB)
    chunks = 120  # 120 MiB, at most 10 MiB/s: the transfers outlast the restart

    async def slow_chunks() -> AsyncIterator[bytes]:
        for _ in range(chunks):
            yield chunk
            await asyncio.sleep(0.1)

    async with sandlot.AsyncClient(sandlot_namespace) as client:
        box = await client.sandboxes.create(BUSYBOX)
        await box.wait("running", timeout=START_TIMEOUT)
        await box.exec(["sh", "-c", f"head -c {chunks * MIB} /dev/urandom > /tmp/down.bin"], check=True)
        expected_down = (await box.exec(["sha256sum", "/tmp/down.bin"], check=True)).stdout.split()[0]
        read_bytes = 0
        ended: list[float] = []  # when each transfer returned

        async def upload() -> object:
            try:
                return await box.files.write("/tmp/up.bin", slow_chunks())
            except Exception as err:
                return err
            finally:
                ended.append(time.monotonic())

        async def download() -> object:
            nonlocal read_bytes
            digest = hashlib.sha256()
            try:
                async for piece in box.files.open_read("/tmp/down.bin"):
                    digest.update(piece)
                    read_bytes += len(piece)
                    await asyncio.sleep(0.05 * len(piece) / MIB)
            except Exception as err:
                return err
            finally:
                ended.append(time.monotonic())
            return digest.hexdigest()

        transfers = [asyncio.ensure_future(upload()), asyncio.ensure_future(download())]
        for _ in range(300):  # both under way
            if read_bytes >= 4 * MIB or any(t.done() for t in transfers):
                break
            await asyncio.sleep(0.1)
        back_at = await asyncio.to_thread(restart_api_server)
        try:
            up, down = await asyncio.wait_for(asyncio.gather(*transfers), 120)
        except TimeoutError:
            up = down = TimeoutError("still running 120 s after the API server was back")
        ended_at = max(ended, default=time.monotonic())
        # A failed transfer's run is ended in the background: given 30 s.
        for _ in range(60):
            listing = (await box.exec(["sh", "-c", "ls -a /tmp; ps -o args"], check=True)).stdout
            left_temp = [name for name in listing.split() if name.startswith(".sandlot-")]
            left_runs = sum(1 for line in listing.splitlines() if "agent file" in line)
            if not left_temp and not left_runs:
                break
            await asyncio.sleep(0.5)
        cleaned_at = time.monotonic()
        up_intact = up == chunks * MIB and (
            (await box.exec(["sha256sum", "/tmp/up.bin"], check=True)).stdout.split()[0]
            == hashlib.sha256(chunk * chunks).hexdigest()
        )
        up_clean = isinstance(up, sandlot.errors.SandlotError) and "up.bin" not in listing
        down_ok = down == expected_down or isinstance(down, sandlot.errors.SandlotError)
        after = await box.files.read("/tmp/down.bin", max_size=None)
        record(
            Row(
                "API server restarted during file transfers",
                f"1 upload and 1 download of {chunks} MiB at about 10 MiB/s, 1 restart",
                f"upload: {'intact' if up_intact else type(up).__name__}; download: "
                f"{'intact' if down == expected_down else type(down).__name__}; temporary files left "
                f"{len(left_temp)} (want 0); file runs left {left_runs} (want 0)",
                f"both returned {ended_at - back_at:+.1f} s from the API server being ready, "
                f"their runs were gone {cleaned_at - back_at:+.1f} s from it",
                (up_intact or up_clean) and down_ok and not left_temp and left_runs == 0,
            )
        )
        await box.terminate()
        assert up_intact or up_clean, f"upload: {up!r}; /tmp: {listing}"
        assert down_ok, repr(down)
        assert left_temp == [], listing
        assert left_runs == 0, listing
        assert hashlib.sha256(after).hexdigest() == expected_down, "a transfer after the restart works"
