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
    "InvalidSpecError",
    "LogStreamError",
    "NameConflictError",
    "NotFoundError",
    "PermissionDeniedError",
    "PhaseUnreachableError",
    "QuotaExceededError",
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


class PermissionDeniedError(SandlotError, PermissionError):
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
