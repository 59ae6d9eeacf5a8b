"""The interface every compared client implements: the operations the scenarios time."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

# How many times the peers of the scale scenario send their `delete_collection` of a
# batch at most: one that outlasts the API server's 60 s request timeout is answered
# 504 (or its connection closed) and stops part of the way, so they delete again, as
# their users would.
DELETE_ROUNDS = 5


class Client(ABC):
    """One way to drive the cluster, written as its users write it. Everything an
    operation does is timed, loading the client's configuration included; setup around
    it is the scenario's (with kubectl). All pods live in the benchmark namespace.

    An operation a client cannot do raises NotImplementedError, which the runner
    reports as "n/a"."""

    name: ClassVar[str]
    # True when the client works in processes it starts (kubectl): its peak RSS is
    # then that of its largest process.
    works_in_child_processes: ClassVar[bool] = False

    @abstractmethod
    def fan_out(self, commands: dict[str, list[str]]) -> list[bytes]:
        """For every name in `commands`, all at once: create that pod, wait until it runs,
        exec its command in it and delete it. The stdout of each exec, in `commands` order."""

    @abstractmethod
    def wait_running(self, names: list[str], selector: str) -> None:
        """Return once the existing pods `names`, which are exactly those matching the
        label selector `selector`, all run."""

    @abstractmethod
    def create_wait_terminate(self, names: list[str], batch: str) -> dict[str, object]:
        """On the scale cluster's fake nodes (RuntimeClass `kwok`), all at once with bounded
        concurrency: create a pod per name, labelled for `batch` as the client labels, wait
        until all run, then terminate or delete them all, leaving none. What it saw: `created`
        (creates that succeeded), `running` (pods the wait saw running), `ended` (pods it
        terminated or deleted), `waited_at` (time.time() when the wait returned), and
        `terminated_at` where removing the records is a step of its own after the terminate."""

    @abstractmethod
    def time_execs(self, pod: str, command: list[str], n: int) -> list[float]:
        """Run `command` in `pod` n times, one after the other; the seconds each took."""

    @abstractmethod
    def exec_stdout(self, pod: str, command: list[str]) -> bytes:
        """Run `command` in `pod` once; its stdout."""

    @abstractmethod
    def follow_logs(self, pod: str, on_line: Callable[[str], None]) -> None:
        """Follow the log of `pod` until it ends, passing each line (without its newline)
        to `on_line` as it arrives."""

    @abstractmethod
    def process_start_seconds(self) -> float | None:
        """For a client that starts a process per call: the median seconds of 10 starts
        that do nothing else. None for a client that starts none."""

    @abstractmethod
    async def time_native_awaits(self, n: int) -> tuple[float, float]:
        """On the caller's event loop, with a connected client: seconds for n awaits of a
        call that can finish at once, then for n awaits of a call that crosses to the
        client's native runtime and back."""

    @abstractmethod
    def time_native_blocking_calls(self, n: int) -> tuple[float, float]:
        """The same two calls through the client's blocking interface: seconds for n calls
        that can finish at once, then for n calls that cross to the native runtime and back."""
