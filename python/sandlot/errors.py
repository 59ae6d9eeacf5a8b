"""sandlot's exceptions. Every one derives from :class:`SandlotError`; some also
derive from the builtin that fits (``sandlot.TimeoutError`` is a ``TimeoutError``)
so generic handlers catch them too. Data travels as attributes, never in the
message alone."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandlot._native import ExecResult, SandboxStatus

__all__ = [
    "ApiError",
    "ClusterUnreachableError",
    "ExecError",
    "FileExistsError",
    "FileNotFoundError",
    "InvalidSpecError",
    "IsADirectoryError",
    "LogStreamError",
    "NameConflictError",
    "NotADirectoryError",
    "NotFoundError",
    "PermissionDeniedError",
    "PermissionError",
    "PhaseUnreachableError",
    "PortNotOpenError",
    "QuotaExceededError",
    "ReadOnlyFileSystemError",
    "SandboxFileError",
    "SandboxNotRunningError",
    "SandlotError",
    "SandlotWarning",
    "TimeoutError",
    "VolumeDeletingError",
    "VolumeInUseError",
]


class SandlotError(Exception):
    """Base of every sandlot error. An error of ``sandboxes.create`` after its
    input was checked carries the sandbox's name (generated ones included) as
    ``sandbox_name``, also shown in the message; other errors have ``None``."""

    sandbox_name: str | None = None

    def __init__(self, message: str, **attributes: Any) -> None:
        super().__init__(message)
        for key, value in attributes.items():
            setattr(self, key, value)


class NotFoundError(SandlotError, LookupError):
    """No sandbox or volume of that name exists."""

    kind: str
    name: str
    namespace: str


class NameConflictError(SandlotError):
    """The name is taken. Sandbox names stay taken while their record exists."""

    kind: str
    name: str
    namespace: str


class InvalidSpecError(SandlotError, ValueError):
    """Input broke a rule; nothing was sent to the cluster. ``field`` names the input."""

    field: str
    rule: str


class SandboxNotRunningError(SandlotError):
    """The operation needs a running sandbox; ``phase`` is the one it is in."""

    name: str
    phase: str


class PortNotOpenError(SandlotError, builtins.ConnectionRefusedError):
    """Nothing in sandbox ``name`` listens on TCP ``port``."""

    name: str
    port: int


class PhaseUnreachableError(SandlotError):
    """A wait cannot succeed: the sandbox ended in another phase (see ``status``)."""

    status: SandboxStatus
    wanted: str


class VolumeInUseError(SandlotError):
    """The volume is mounted by live sandboxes (``sandboxes``); terminate them or delete with ``force=True``."""

    name: str
    sandboxes: list[str]


class VolumeDeletingError(NotFoundError):
    """A create mounts a volume that is being deleted (or that a delete is
    deciding about); the sandbox could never start on it, so none is left."""


class QuotaExceededError(SandlotError):
    """The namespace's ResourceQuota refused the sandbox or volume; terminate
    or purge sandboxes, or ask for a larger quota. Not a permission problem."""

    namespace: str


class TimeoutError(SandlotError, builtins.TimeoutError):
    """A wait or call did not finish within its timeout (``after`` seconds).
    From ``exec``, whose command was killed, it carries the output so far:
    ``stdout``, ``stderr``, ``stdout_bytes``, ``stderr_bytes`` and
    ``truncated``, as an ``ExecResult`` would (elsewhere they are ``None``)."""

    what: str
    after: float
    stdout: str | None = None
    stderr: str | None = None
    stdout_bytes: bytes | None = None
    stderr_bytes: bytes | None = None
    truncated: bool | None = None


class PermissionDeniedError(SandlotError, builtins.PermissionError):
    """The cluster refused the credentials or the action in ``namespace``.
    ``namespace_source`` says where the client's namespace came from:
    ``"argument"``, ``"environment"`` ($SANDLOT_NAMESPACE), ``"service_account"``
    (the pod's own namespace) or ``"default"`` ("sandlot")."""

    namespace: str
    namespace_source: str


class ClusterUnreachableError(SandlotError, ConnectionError):
    """The cluster cannot be reached, or no configuration for one was found."""


class ExecError(SandlotError):
    """An exec broke before the command's exit status arrived (its outcome is
    unknown), or, with ``check=True``, the command exited non-zero: then
    ``result`` holds its ``ExecResult``."""

    name: str
    result: ExecResult | None = None


class SandboxFileError(SandlotError, OSError):
    """A file operation failed at ``path`` in ``target``: ``sandbox "name"``,
    ``volume "name"``, or ``this machine`` for a local file of an upload or
    download. ``errno`` is the system's error number (Linux's), ``strerror``
    what it means (or why sandlot refused: errno 1 for an entry a download
    will not write), ``path_bytes`` the path's bytes (``path`` shows bytes
    that are not UTF-8 as ``os.fsdecode`` does); ``filename`` is ``path``.
    The subclasses also derive from the builtin for their errno, so ``except
    FileNotFoundError`` catches a missing file in a sandbox too."""

    errno: int
    strerror: str
    target: str
    path: str
    path_bytes: bytes

    def __str__(self) -> str:
        # OSError's own would show "[Errno 2] ..." without the target.
        return str(self.args[0]) if self.args else ""


class FileNotFoundError(SandboxFileError, builtins.FileNotFoundError):
    """No file or directory at ``path`` (or at one of its parents); errno 2."""


class FileExistsError(SandboxFileError, builtins.FileExistsError):
    """Something is at ``path`` already (an exclusive write or rename, a
    ``mkdir`` without ``parents``); errno 17."""


class NotADirectoryError(SandboxFileError, builtins.NotADirectoryError):
    """A directory was needed at ``path`` (or a parent of it) and something
    else is there; errno 20."""


class IsADirectoryError(SandboxFileError, builtins.IsADirectoryError):
    """A file was needed at ``path`` and a directory is there; errno 21."""


class PermissionError(SandboxFileError, builtins.PermissionError):
    """The sandbox's user may not do this at ``path`` (errno 13), or the
    operation is not allowed (errno 1), such as a download's entry that
    would land or point outside its directory. Not the cluster's refusal,
    which is ``PermissionDeniedError``."""


class ReadOnlyFileSystemError(SandboxFileError):
    """``path`` is on a read-only filesystem (errno 30): a sandbox made with
    ``read_only_root_filesystem=True`` writes only below its volume mounts
    and ``/tmp``, and a volume mounted read-only is read-only."""


class LogStreamError(SandlotError, ConnectionError):
    """A log stream broke before the log ended."""

    name: str


class ApiError(SandlotError):
    """Any other refusal of the Kubernetes API server; ``status`` is the HTTP status."""

    status: int
    reason: str


class SandlotWarning(UserWarning):
    """A sandbox gets less protection than sandlot's default, because the
    cluster cannot give it (for instance no user namespace where the nodes do
    not support one). Shown once per client; the create goes on."""
