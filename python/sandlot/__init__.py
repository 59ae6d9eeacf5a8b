"""sandlot: sandboxes on Kubernetes for code nobody should trust.

async with sandlot.AsyncClient() as client:
    sb = await client.sandboxes.create("docker.io/library/python:3.11-slim")
    await sb.wait("running", timeout=60)
    result = await sb.exec(["python3", "-c", "print(6*7)"])
    await sb.terminate()
"""

import atexit

from sandlot._enums import Phase, TerminationReason, VolumePhase
from sandlot._native import (
    AsyncClient,
    AsyncProcess,
    AsyncSandbox,
    AsyncSandboxes,
    AsyncVolume,
    AsyncVolumes,
    ByteStream,
    ExecResult,
    LineStream,
    SandboxStatus,
    TerminateResult,
    __version__,
    settle,
)
from sandlot._sync import Client, Process, Sandbox, Sandboxes, SandboxList, Volume, Volumes
from sandlot.errors import (
    ApiError,
    ClusterUnreachableError,
    ExecError,
    InvalidSpecError,
    LogStreamError,
    NameConflictError,
    NotFoundError,
    PermissionDeniedError,
    PhaseUnreachableError,
    SandboxNotRunningError,
    SandlotError,
    TimeoutError,
    VolumeInUseError,
)

# A native task may still be handing its result to asyncio as the interpreter
# exits; finalizing under it would crash the process. Let such tasks finish.
atexit.register(settle, 0.02)

__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncProcess",
    "AsyncSandbox",
    "AsyncSandboxes",
    "AsyncVolume",
    "AsyncVolumes",
    "ByteStream",
    "Client",
    "ClusterUnreachableError",
    "ExecError",
    "ExecResult",
    "InvalidSpecError",
    "LineStream",
    "LogStreamError",
    "NameConflictError",
    "NotFoundError",
    "PermissionDeniedError",
    "Phase",
    "PhaseUnreachableError",
    "Process",
    "Sandbox",
    "SandboxList",
    "SandboxNotRunningError",
    "SandboxStatus",
    "Sandboxes",
    "SandlotError",
    "TerminateResult",
    "TerminationReason",
    "TimeoutError",
    "Volume",
    "VolumeInUseError",
    "VolumePhase",
    "Volumes",
    "__version__",
]
