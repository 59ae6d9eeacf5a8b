"""sandlot: sandboxes on Kubernetes for code nobody should trust.

async with sandlot.AsyncClient() as client:
    sb = await client.sandboxes.create("docker.io/library/python:3.11-slim")
    await sb.wait("running", timeout=60)
    result = await sb.exec(["python3", "-c", "print(6*7)"])
    await sb.terminate()
"""

import atexit

from sandlot._enums import Phase, TerminationReason, VolumePhase
from sandlot._lists import SandboxList
from sandlot._native import (
    AsyncClient,
    AsyncFiles,
    AsyncFileUpload,
    AsyncProcess,
    AsyncSandbox,
    AsyncSandboxes,
    AsyncVolume,
    AsyncVolumes,
    ByteStream,
    Client,
    ExecResult,
    FileChunks,
    FileInfo,
    Files,
    FileUpload,
    LineStream,
    Metrics,
    Process,
    ProcessInfo,
    Sandbox,
    Sandboxes,
    SandboxStatus,
    TerminateResult,
    Volume,
    Volumes,
    __version__,
    _quiesce,
)
from sandlot.errors import (
    ApiError,
    ClusterUnreachableError,
    ExecError,
    FileExistsError,
    FileNotFoundError,
    InvalidSpecError,
    IsADirectoryError,
    LogStreamError,
    NameConflictError,
    NotADirectoryError,
    NotFoundError,
    PermissionDeniedError,
    PermissionError,
    PhaseUnreachableError,
    QuotaExceededError,
    ReadOnlyFileSystemError,
    SandboxFileError,
    SandboxNotRunningError,
    SandlotError,
    SandlotWarning,
    TimeoutError,
    VolumeDeletingError,
    VolumeInUseError,
)

# A native task may still be handing its result to asyncio as the interpreter
# exits; finalizing under it would crash the process. Let those finish, and
# keep later ones away from Python.
atexit.register(_quiesce)

__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncFileUpload",
    "AsyncFiles",
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
    "FileChunks",
    "FileExistsError",
    "FileInfo",
    "FileNotFoundError",
    "FileUpload",
    "Files",
    "InvalidSpecError",
    "IsADirectoryError",
    "LineStream",
    "LogStreamError",
    "Metrics",
    "NameConflictError",
    "NotADirectoryError",
    "NotFoundError",
    "PermissionDeniedError",
    "PermissionError",
    "Phase",
    "PhaseUnreachableError",
    "Process",
    "ProcessInfo",
    "QuotaExceededError",
    "ReadOnlyFileSystemError",
    "Sandbox",
    "SandboxFileError",
    "SandboxList",
    "SandboxNotRunningError",
    "SandboxStatus",
    "Sandboxes",
    "SandlotError",
    "SandlotWarning",
    "TerminateResult",
    "TerminationReason",
    "TimeoutError",
    "Volume",
    "VolumeDeletingError",
    "VolumeInUseError",
    "VolumePhase",
    "Volumes",
    "__version__",
]
