"""The string enums of sandlot's public API."""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """Where a sandbox is in its life. Compares equal to its name: ``Phase.RUNNING == "running"``."""

    QUEUED = "queued"
    """Accepted, waiting for capacity."""
    CREATING = "creating"
    """The runtime is being prepared: image pull, container creation."""
    RUNNING = "running"
    """Ready; accepts exec."""
    SUCCEEDED = "succeeded"
    """The command exited 0."""
    FAILED = "failed"
    """The command or the runtime failed."""
    TERMINATED = "terminated"
    """Explicitly terminated through the SDK or CLI."""

    @property
    def is_terminal(self) -> bool:
        """True for phases a sandbox never leaves."""
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.TERMINATED)


class TerminationReason(StrEnum):
    """Why a sandbox stopped."""

    WORKLOAD_EXITED = "workload_exited"
    TTL_EXPIRED = "ttl_expired"
    TERMINATED = "terminated"
    LAUNCH_FAILED = "launch_failed"
    OOM_KILLED = "oom_killed"
    DISK_EXCEEDED = "disk_exceeded"
    BACKEND_LOST = "backend_lost"


class VolumePhase(StrEnum):
    """Where a volume is in its life."""

    PENDING = "pending"
    """Being provisioned."""
    READY = "ready"
    """Can be mounted (bound, or bound on first use by its storage class)."""
    FAILED = "failed"
    """Its storage was lost."""
