"""sandlot: one AsyncClient per operation; concurrent work as tasks on one event loop."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import ClassVar, Literal

import sandlot
from benchmarks.clients.base import Client
from benchmarks.cluster import BUSYBOX, NAMESPACE
from sandlot import _testing


class SandlotClient(Client):
    name = "sandlot"
    # The fan-out's sandboxes get the default network: a NetworkPolicy and the gate.
    network = "internet"
    # None: a user namespace, as the local nodes support them.
    user_namespace: bool | None = None
    # How execs run; None: sandlot's default ($SANDLOT_EXEC_PATH, else "auto").
    # A set path is checked on every result `time_execs` and `exec_stdout` get.
    exec_path: ClassVar[Literal["auto", "agent", "kubernetes"] | None] = None

    def __init__(self) -> None:
        # The path (ExecResult.path) each exec of `time_execs` and `exec_stdout` took.
        self.paths: Counter[str] = Counter()

    def client(self) -> sandlot.AsyncClient:
        return sandlot.AsyncClient(NAMESPACE, exec_path=self.exec_path)

    def took(self, result: sandlot.ExecResult) -> sandlot.ExecResult:
        """Counts the path `result` took; one other than a set `exec_path` is an error."""
        self.paths[result.path] += 1
        if self.exec_path in ("agent", "kubernetes") and result.path != self.exec_path:
            raise RuntimeError(f"an exec took the {result.path} path, not {self.exec_path}")
        return result

    def fan_out(self, commands: dict[str, list[str]]) -> list[bytes]:
        async def run() -> list[bytes]:
            async with self.client() as c:

                async def one(name: str) -> bytes:
                    sb = await c.sandboxes.create(
                        BUSYBOX,
                        name=name,
                        network=self.network,  # type: ignore[arg-type]
                        user_namespace=self.user_namespace,
                    )
                    await sb.wait("running", timeout=600)  # every wait shares the client's one watch
                    result = await sb.exec(commands[name])
                    await sb.terminate()
                    return result.stdout_bytes

                return await asyncio.gather(*(one(name) for name in commands))

        return asyncio.run(run())

    def wait_running(self, names: list[str], selector: str) -> None:
        async def run() -> None:
            async with self.client() as c:
                await c.sandboxes.wait_all(names, "running", timeout=600)

        asyncio.run(run())

    def create_wait_terminate(self, names: list[str], batch: str) -> dict[str, object]:
        if self.name != "sandlot":
            raise NotImplementedError("the scale scenario measures sandlot's defaults")
        seen: dict[str, object] = {}

        async def run() -> None:
            async with self.client() as c:  # its default request rate (qps 50, burst 300)
                limit = asyncio.Semaphore(100)

                async def one(name: str) -> sandlot.AsyncSandbox:
                    async with limit:
                        return await c.sandboxes.create(
                            BUSYBOX,
                            name=name,
                            runtime_class="kwok",
                            network="unrestricted",
                            user_namespace=False,
                            tags={"batch": batch},
                        )

                made = await asyncio.gather(*(one(name) for name in names))
                seen["created"] = len(made)
                statuses = await c.sandboxes.wait_all(made, "running", timeout=3600)
                seen["waited_at"] = time.time()
                seen["running"] = sum(s.phase == sandlot.Phase.RUNNING for s in statuses)
                results = await c.sandboxes.terminate_many(made)
                seen["ended"] = sum(r.terminated for r in results)
                seen["terminate_errors"] = sum(r.error is not None for r in results)
                seen["terminated_at"] = time.time()
                seen["purged"] = len(await c.sandboxes.purge(made))

        asyncio.run(run())
        return seen

    def time_execs(self, pod: str, command: list[str], n: int) -> list[float]:
        times: list[float] = []

        async def run() -> None:
            async with self.client() as c:
                sb = await c.sandboxes.get(pod)  # the pod carries sandlot's labels: adopt it
                for _ in range(n):
                    t = time.perf_counter()
                    result = await sb.exec(command)
                    times.append(time.perf_counter() - t)
                    self.took(result)

        asyncio.run(run())
        return times

    def exec_stdout(self, pod: str, command: list[str]) -> bytes:
        received: list[bytes] = []  # kept out of asyncio.run's return: it reprs its result, costly at 100 MiB

        async def run() -> None:
            async with self.client() as c:
                sb = await c.sandboxes.get(pod)
                received.append(self.took(await sb.exec(command, max_output=None)).stdout_bytes)

        asyncio.run(run())
        return received[0]

    def follow_logs(self, pod: str, on_line: Callable[[str], None]) -> None:
        async def run() -> None:
            async with self.client() as c:
                sb = await c.sandboxes.get(pod)
                async for line in sb.stream_logs(follow=True):
                    on_line(line)

        asyncio.run(run())

    def process_start_seconds(self) -> None:
        return None  # no process per call

    async def time_native_awaits(self, n: int) -> tuple[float, float]:
        async with self.client() as c:
            t = time.perf_counter()
            for _ in range(n):
                await c.connect()  # connected already: nothing to wait for
            ready = time.perf_counter() - t
            t = time.perf_counter()
            for _ in range(n):
                await _testing.yield_once()
            crossing = time.perf_counter() - t
        return ready, crossing

    def time_native_blocking_calls(self, n: int) -> tuple[float, float]:
        with sandlot.Client(NAMESPACE, exec_path=self.exec_path) as c:
            t = time.perf_counter()
            for _ in range(n):
                c.connect()  # connected already: nothing to wait for
            ready = time.perf_counter() - t
            t = time.perf_counter()
            for _ in range(n):
                _testing.yield_once(blocking=True)
            crossing = time.perf_counter() - t
        return ready, crossing


CLIENT = SandlotClient()
