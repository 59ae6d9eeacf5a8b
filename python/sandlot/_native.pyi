"""Stubs of the Rust extension module (rust/sandlot-py)."""

import builtins
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Self, final

from sandlot._enums import Phase, TerminationReason, VolumePhase

__all__ = [
    "AsyncClient",
    "AsyncSandbox",
    "AsyncSandboxes",
    "AsyncVolume",
    "AsyncVolumes",
    "ExecResult",
    "SandboxStatus",
    "TerminateResult",
    "__version__",
    "AsyncProcess",
    "ByteStream",
    "LineStream",
    "run_cli",
    "runtime_task_count",
    "wait_idle",
]

__version__: str

_PhaseLike = Phase | str

def run_cli(argv: Sequence[str]) -> int: ...
def wait_idle(timeout: float) -> bool: ...
def runtime_task_count() -> int: ...

@final
class SandboxStatus:
    """A sandbox as last seen."""

    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def phase(self) -> Phase: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def termination_reason(self) -> TerminationReason | None: ...
    @property
    def message(self) -> str | None: ...
    @property
    def created_at(self) -> datetime | None: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def image(self) -> str: ...
    @property
    def tags(self) -> dict[str, str]: ...
    @property
    def volume_mounts(self) -> dict[str, str]: ...

@final
class ExecResult:
    """Output and exact exit code of a finished command."""

    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...
    @property
    def stdout_bytes(self) -> bytes: ...
    @property
    def stderr_bytes(self) -> bytes: ...
    @property
    def exit_code(self) -> int: ...
    @property
    def ok(self) -> bool: ...

@final
class ByteStream:
    """Bytes of a command's stdout or stderr as they arrive."""

    def __aiter__(self) -> ByteStream: ...
    def __anext__(self) -> Awaitable[bytes]: ...
    def read_all(self) -> Awaitable[bytes]: ...

@final
class LineStream:
    """Log lines as they arrive, without line endings."""

    def __aiter__(self) -> LineStream: ...
    def __anext__(self) -> Awaitable[str]: ...

@final
class AsyncProcess:
    """A command running in a sandbox, started by ``AsyncSandbox.spawn``."""

    @property
    def stdout(self) -> ByteStream: ...
    @property
    def stderr(self) -> ByteStream: ...
    def write(self, data: str | bytes) -> Awaitable[None]: ...
    def close_stdin(self) -> Awaitable[None]: ...
    def wait(self) -> Awaitable[int]: ...
    def resize(self, width: int, height: int) -> None: ...
    def close(self) -> None: ...
    def __aenter__(self) -> Awaitable[AsyncProcess]: ...
    def __aexit__(self, *exc_info: object) -> Awaitable[bool]: ...

@final
class TerminateResult:
    """What a bulk terminate did to one sandbox."""

    @property
    def name(self) -> str: ...
    @property
    def terminated(self) -> bool: ...
    @property
    def status(self) -> SandboxStatus | None: ...
    @property
    def error(self) -> str | None: ...

@final
class AsyncSandbox:
    """One sandbox."""

    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def status(self) -> SandboxStatus: ...
    @property
    def phase(self) -> Phase: ...
    def refresh(self) -> Awaitable[SandboxStatus]: ...
    def wait(self, phase: _PhaseLike | Iterable[_PhaseLike], *, timeout: float = 300.0) -> Awaitable[SandboxStatus]: ...
    def exec(
        self,
        command: Sequence[str] | str,
        *,
        stdin: str | bytes | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        check: bool = False,
    ) -> Awaitable[ExecResult]: ...
    def spawn(
        self,
        command: Sequence[str] | str,
        *,
        stdin: bool = False,
        tty: bool = False,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
    ) -> Awaitable[AsyncProcess]: ...
    def stream_logs(
        self, *, follow: bool = True, tail: int | None = None, since: float | None = None, timestamps: bool = False
    ) -> LineStream: ...
    def logs(
        self, *, tail: int | None = None, since: float | None = None, timestamps: bool = False
    ) -> Awaitable[str]: ...
    def terminate(self) -> Awaitable[SandboxStatus]: ...

@final
class AsyncSandboxes:
    """The sandboxes of a client's namespace."""

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
    ) -> Awaitable[AsyncSandbox]: ...
    def get(self, name: str) -> Awaitable[AsyncSandbox]: ...
    def list(
        self, *, phase: _PhaseLike | Iterable[_PhaseLike] | None = None, tags: Mapping[str, str] | None = None
    ) -> Awaitable[list[AsyncSandbox]]: ...
    def wait_all(
        self,
        sandboxes: Iterable[AsyncSandbox | str],
        phase: _PhaseLike | Iterable[_PhaseLike],
        *,
        timeout: float = 300.0,
    ) -> Awaitable[builtins.list[SandboxStatus]]: ...
    def terminate_many(
        self,
        names: Iterable[AsyncSandbox | str] | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        phase: _PhaseLike | Iterable[_PhaseLike] | None = None,
        all: bool = False,
    ) -> Awaitable[builtins.list[TerminateResult]]: ...
    def purge(
        self,
        names: Iterable[AsyncSandbox | str] | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        older_than: float | None = None,
        all: bool = False,
    ) -> Awaitable[builtins.list[str]]: ...

@final
class AsyncVolume:
    """One volume, as last seen; ``refresh()`` reads it anew."""

    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def phase(self) -> VolumePhase: ...
    @property
    def size(self) -> str: ...
    @property
    def storage_class(self) -> str | None: ...
    @property
    def access_mode(self) -> str: ...
    @property
    def attached_to(self) -> builtins.list[str]: ...
    @property
    def created_at(self) -> datetime | None: ...
    @property
    def tags(self) -> dict[str, str]: ...
    def refresh(self) -> Awaitable[AsyncVolume]: ...
    def delete(self, *, force: bool = False, timeout: float = 120.0) -> Awaitable[None]: ...

@final
class AsyncVolumes:
    """The volumes of a client's namespace."""

    def create(
        self,
        name: str,
        *,
        size: str = "1Gi",
        storage_class: str | None = None,
        access_mode: str = "ReadWriteOnce",
        tags: Mapping[str, str] | None = None,
    ) -> Awaitable[AsyncVolume]: ...
    def get(self, name: str) -> Awaitable[AsyncVolume]: ...
    def list(self, *, tags: Mapping[str, str] | None = None) -> Awaitable[builtins.list[AsyncVolume]]: ...
    def delete(self, name: str, *, force: bool = False, timeout: float = 120.0) -> Awaitable[None]: ...

@final
class AsyncClient:
    """Async client for sandboxes in one namespace of one cluster."""

    def __new__(cls, namespace: str | None = None, *, context: str | None = None) -> Self: ...
    @property
    def namespace(self) -> str: ...
    @property
    def sandboxes(self) -> AsyncSandboxes: ...
    @property
    def volumes(self) -> AsyncVolumes: ...
    def connect(self) -> Awaitable[None]: ...
    def __aenter__(self) -> Awaitable[AsyncClient]: ...
    def __aexit__(self, *exc_info: object) -> Awaitable[None]: ...
