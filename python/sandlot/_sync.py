"""The blocking client, for scripts and notebooks: the same operations as
:class:`sandlot.AsyncClient`, run on the same Rust futures.

Every call is handed to one background event loop shared by all sync clients;
the calling thread waits without holding the GIL, and Ctrl-C while waiting
cancels the call and raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import asyncio
import builtins
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

from sandlot._enums import Phase, VolumePhase
from sandlot._native import (
    AsyncClient,
    AsyncProcess,
    AsyncSandbox,
    AsyncVolume,
    ExecResult,
    LineStream,
    SandboxStatus,
    TerminateResult,
    sandboxes_html,
)

T = TypeVar("T")
PhaseLike = Phase | str


class _Runner:
    """A daemon thread running the event loop that sync calls are handed to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="sandlot-sync", daemon=True)
                thread.start()
                self._loop = loop
            return self._loop

    def call(self, function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Calls async `function` on the loop thread and waits for its result."""

        async def invoke() -> T:
            return await function(*args, **kwargs)

        future: Future[T] = asyncio.run_coroutine_threadsafe(invoke(), self._ensure_loop())
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise


_runner = _Runner()


def _stream_items(next_item: Callable[[], Awaitable[T]]) -> Iterator[T]:
    while True:
        try:
            yield _runner.call(next_item)
        except StopAsyncIteration:
            return


class SandboxList(builtins.list["Sandbox"]):
    """A list of sandboxes that shows as a table in notebooks."""

    def _repr_html_(self) -> str:
        return sandboxes_html([sandbox.status for sandbox in self])


class Process:
    """A command running in a sandbox (see :meth:`Sandbox.spawn`).

    Iterate ``stdout`` and ``stderr`` for chunks of bytes as they arrive;
    ``write()`` and ``close_stdin()`` feed its input; ``wait()`` returns the
    exit code. ``with`` closes the connection at the end of the block.
    """

    def __init__(self, process: AsyncProcess) -> None:
        self._process = process

    @property
    def stdout(self) -> Iterator[bytes]:
        """Chunks of the command's output until it ends."""
        return _stream_items(self._process.stdout.__anext__)

    @property
    def stderr(self) -> Iterator[bytes]:
        """Chunks of the command's error output until it ends (empty on a TTY)."""
        return _stream_items(self._process.stderr.__anext__)

    def read_stdout(self) -> bytes:
        """Everything left on stdout."""
        return _runner.call(self._process.stdout.read_all)

    def read_stderr(self) -> bytes:
        """Everything left on stderr."""
        return _runner.call(self._process.stderr.read_all)

    def write(self, data: str | bytes) -> None:
        """Writes to the command's stdin (spawned with ``stdin=True``)."""
        _runner.call(self._process.write, data)

    def close_stdin(self) -> None:
        """Closes the command's stdin, so it sees end of input."""
        _runner.call(self._process.close_stdin)

    def wait(self) -> int:
        """Waits for the command to end and returns its exact exit code."""
        return _runner.call(self._process.wait)

    def resize(self, width: int, height: int) -> None:
        """Sends a new terminal size (TTY only)."""
        self._process.resize(width, height)

    def close(self) -> None:
        """Tears the connection down; the command may keep running in the sandbox."""
        self._process.close()

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Sandbox:
    """One sandbox. ``status`` is as last seen; ``refresh()`` reads it anew.
    ``with`` terminates the sandbox at the end of the block, also on errors."""

    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._sandbox = sandbox

    @property
    def name(self) -> str:
        return self._sandbox.name

    @property
    def namespace(self) -> str:
        return self._sandbox.namespace

    @property
    def status(self) -> SandboxStatus:
        """The status as last seen (no request is made)."""
        return self._sandbox.status

    @property
    def phase(self) -> Phase:
        """The phase as last seen (no request is made)."""
        return self._sandbox.phase

    def refresh(self) -> SandboxStatus:
        """Reads the current status."""
        return _runner.call(self._sandbox.refresh)

    def wait(self, phase: PhaseLike | Iterable[PhaseLike], *, timeout: float = 300.0) -> SandboxStatus:
        """Waits until the sandbox is in `phase` (one or several); see :meth:`AsyncSandbox.wait`."""
        return _runner.call(self._sandbox.wait, phase, timeout=timeout)

    def exec(
        self,
        command: Sequence[str] | str,
        *,
        stdin: str | bytes | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        check: bool = False,
    ) -> ExecResult:
        """Runs `command` and collects its output and exact exit code; see :meth:`AsyncSandbox.exec`."""
        return _runner.call(
            self._sandbox.exec, command, stdin=stdin, timeout=timeout, env=env, workdir=workdir, check=check
        )

    def spawn(
        self,
        command: Sequence[str] | str,
        *,
        stdin: bool = False,
        tty: bool = False,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> Process:
        """Starts `command` with streaming output; see :meth:`AsyncSandbox.spawn`."""
        process = _runner.call(
            self._sandbox.spawn, command, stdin=stdin, tty=tty, timeout=timeout, env=env, workdir=workdir
        )
        return Process(process)

    def logs(self, *, tail: int | None = None, since: float | None = None, timestamps: bool = False) -> str:
        """The log text, also after the sandbox ended."""
        return _runner.call(self._sandbox.logs, tail=tail, since=since, timestamps=timestamps)

    def stream_logs(
        self, *, follow: bool = True, tail: int | None = None, since: float | None = None, timestamps: bool = False
    ) -> Iterator[str]:
        """Log lines as they arrive; with `follow`, until the sandbox ends."""
        lines: LineStream = self._sandbox.stream_logs(follow=follow, tail=tail, since=since, timestamps=timestamps)
        return _stream_items(lines.__anext__)

    def terminate(self) -> SandboxStatus:
        """Terminates the sandbox; its record and logs stay."""
        return _runner.call(self._sandbox.terminate)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        _runner.call(self._sandbox.__aexit__, exc_type, exc, traceback)

    def _repr_html_(self) -> str:
        return self._sandbox._repr_html_()

    def __repr__(self) -> str:
        return f"Sandbox(name='{self.name}', phase='{self.phase}')"


class Sandboxes:
    """The sandboxes of a client's namespace."""

    def __init__(self, client: AsyncClient) -> None:
        self._sandboxes = client.sandboxes

    def create(
        self,
        image: str,
        *,
        name: str | None = None,
        command: Sequence[str] | None = None,
        args: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
        volume_mounts: Mapping[str, str] | None = None,
        resources: Mapping[str, str] | None = None,
        ttl_seconds: int | None = None,
        run_as_user: int | None = None,
        read_only_root_filesystem: bool = False,
        runtime_class: str | None = None,
    ) -> Sandbox:
        """Creates a sandbox from `image`; see :meth:`AsyncSandboxes.create`."""
        sandbox = _runner.call(
            self._sandboxes.create,
            image,
            name=name,
            command=command,
            args=args,
            env=env,
            tags=tags,
            volume_mounts=volume_mounts,
            resources=resources,
            ttl_seconds=ttl_seconds,
            run_as_user=run_as_user,
            read_only_root_filesystem=read_only_root_filesystem,
            runtime_class=runtime_class,
        )
        return Sandbox(sandbox)

    def get(self, name: str) -> Sandbox:
        """The sandbox named `name`; raises ``NotFoundError`` if there is none."""
        return Sandbox(_runner.call(self._sandboxes.get, name))

    def list(
        self, *, phase: PhaseLike | Iterable[PhaseLike] | None = None, tags: Mapping[str, str] | None = None
    ) -> SandboxList:
        """The sandboxes in `phase` carrying all of `tags`, oldest first."""
        found = _runner.call(self._sandboxes.list, phase=phase, tags=tags)
        return SandboxList(Sandbox(sandbox) for sandbox in found)

    def wait_all(
        self, sandboxes: Iterable[Sandbox | str], phase: PhaseLike | Iterable[PhaseLike], *, timeout: float = 300.0
    ) -> builtins.list[SandboxStatus]:
        """Waits until every sandbox is in `phase`, over one shared watch."""
        names = [s.name if isinstance(s, Sandbox) else s for s in sandboxes]
        return _runner.call(self._sandboxes.wait_all, names, phase, timeout=timeout)

    def terminate_many(
        self,
        names: Iterable[Sandbox | str] | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        phase: PhaseLike | Iterable[PhaseLike] | None = None,
        all: bool = False,
    ) -> builtins.list[TerminateResult]:
        """Terminates many sandboxes with bounded concurrency; one result each."""
        chosen = None if names is None else [s.name if isinstance(s, Sandbox) else s for s in names]
        return _runner.call(self._sandboxes.terminate_many, chosen, tags=tags, phase=phase, all=all)

    def purge(
        self,
        names: Iterable[Sandbox | str] | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        older_than: float | None = None,
        all: bool = False,
    ) -> builtins.list[str]:
        """Deletes the records of ended sandboxes; returns the names purged."""
        chosen = None if names is None else [s.name if isinstance(s, Sandbox) else s for s in names]
        return _runner.call(self._sandboxes.purge, chosen, tags=tags, older_than=older_than, all=all)


class Volume:
    """One volume, as last seen; ``refresh()`` reads it anew."""

    def __init__(self, volume: AsyncVolume) -> None:
        self._volume = volume

    @property
    def name(self) -> str:
        return self._volume.name

    @property
    def phase(self) -> VolumePhase:
        return self._volume.phase

    @property
    def size(self) -> str:
        return self._volume.size

    @property
    def storage_class(self) -> str | None:
        return self._volume.storage_class

    @property
    def attached_to(self) -> builtins.list[str]:
        """Names of the live sandboxes that mount this volume."""
        return self._volume.attached_to

    def refresh(self) -> Volume:
        """Reads the volume anew."""
        _runner.call(self._volume.refresh)
        return self

    def delete(self, *, force: bool = False, timeout: float = 120.0) -> None:
        """Deletes the volume; see :meth:`AsyncVolumes.delete`."""
        _runner.call(self._volume.delete, force=force, timeout=timeout)

    def _repr_html_(self) -> str:
        return self._volume._repr_html_()

    def __repr__(self) -> str:
        return f"Volume(name='{self.name}', phase='{self.phase}', size='{self.size}')"


class Volumes:
    """The volumes of a client's namespace."""

    def __init__(self, client: AsyncClient) -> None:
        self._volumes = client.volumes

    def create(
        self,
        name: str,
        *,
        size: str = "1Gi",
        storage_class: str | None = None,
        access_mode: str = "ReadWriteOnce",
        tags: Mapping[str, str] | None = None,
    ) -> Volume:
        """Creates volume `name`; see :meth:`AsyncVolumes.create`."""
        volume = _runner.call(
            self._volumes.create, name, size=size, storage_class=storage_class, access_mode=access_mode, tags=tags
        )
        return Volume(volume)

    def get(self, name: str) -> Volume:
        """The volume named `name`; raises ``NotFoundError`` if there is none."""
        return Volume(_runner.call(self._volumes.get, name))

    def list(self, *, tags: Mapping[str, str] | None = None) -> builtins.list[Volume]:
        """The volumes carrying all of `tags`, oldest first."""
        return [Volume(v) for v in _runner.call(self._volumes.list, tags=tags)]

    def delete(self, name: str, *, force: bool = False, timeout: float = 120.0) -> None:
        """Deletes volume `name` and waits until its name is free again."""
        _runner.call(self._volumes.delete, name, force=force, timeout=timeout)


class Client:
    """Blocking client for sandboxes in one namespace of one cluster.

    The same configuration as :class:`AsyncClient`: kubeconfig or in-cluster
    credentials; namespace from the argument, ``$SANDLOT_NAMESPACE`` or "sandlot".
    """

    def __init__(self, namespace: str | None = None, *, context: str | None = None) -> None:
        self._client = AsyncClient(namespace, context=context)

    @property
    def namespace(self) -> str:
        return self._client.namespace

    @property
    def sandboxes(self) -> Sandboxes:
        """Sandbox operations."""
        return Sandboxes(self._client)

    @property
    def volumes(self) -> Volumes:
        """Volume operations."""
        return Volumes(self._client)

    def connect(self) -> None:
        """Connects now, so configuration and connection errors surface here."""
        _runner.call(self._client.connect)

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def __repr__(self) -> str:
        return f"Client(namespace='{self.namespace}')"


__all__ = ["Client", "Process", "Sandbox", "SandboxList", "Sandboxes", "Volume", "Volumes"]
