"""What the sandbox agent's scenarios share: a sandbox with the agent made for the
clients to exec into, the same sandbox reached through both exec paths, and their
paired chart."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import sandlot
from benchmarks.cluster import BUSYBOX, NAMESPACE

if TYPE_CHECKING:
    from matplotlib.axes import Axes

ExecPath = Literal["agent", "kubernetes"]
PATHS: tuple[ExecPath, ExecPath] = ("agent", "kubernetes")
# Rounds of each path, alternating, where a scenario repeats a measurement in one run.
ROUNDS = 3


def in_turn(round_: int) -> tuple[ExecPath, ...]:
    """The paths in round `round_`'s order: agent first in even rounds, last in odd ones."""
    return PATHS if round_ % 2 == 0 else PATHS[::-1]


def agent_sandbox() -> str:
    """The name of a new sandbox with the agent (no NetworkPolicy or gate), running
    once this returns. Made by sandlot's CLI in a process of its own, so a baseline
    client's worker starts no sandlot client of its own (no runtime, watch or
    connections charged to it)."""
    cli = Path(sys.executable).with_name("sandlot")
    command = [str(cli), "create", "-n", NAMESPACE, "--exec-path", "agent", "--network", "unrestricted"]
    proc = subprocess.run(
        [*command, "--wait", "--timeout", "300", "-o", "name", BUSYBOX], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sandlot create failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout.split()[-1]


def checked(result: sandlot.ExecResult, path: ExecPath) -> sandlot.ExecResult:
    """`result`, which must have taken `path`."""
    if result.path != path:
        raise RuntimeError(f"an exec of the {path} client took the {result.path} path")
    return result


@contextlib.asynccontextmanager
async def one_sandbox_both_paths() -> AsyncIterator[dict[ExecPath, sandlot.AsyncSandbox]]:
    """One running sandbox with the agent (no NetworkPolicy or gate) as seen by a
    client with exec_path="agent" and by one with exec_path="kubernetes", each
    connected and past one `true` exec (the agent's connection open)."""
    async with (
        sandlot.AsyncClient(NAMESPACE, exec_path="agent") as agent,
        sandlot.AsyncClient(NAMESPACE, exec_path="kubernetes") as kube,
    ):
        sb = await agent.sandboxes.create(BUSYBOX, network="unrestricted")
        try:
            await sb.wait("running", timeout=600)
            sandboxes: dict[ExecPath, sandlot.AsyncSandbox] = {
                "agent": sb,
                "kubernetes": await kube.sandboxes.get(sb.name),
            }
            for path in PATHS:
                checked(await sandboxes[path].exec(["true"], check=True), path)
            yield sandboxes
        finally:
            await sb.terminate()


def ratio(agent: float, kubernetes: float) -> float | None:
    """agent ÷ Kubernetes path, to 2 decimals."""
    return round(agent / kubernetes, 2) if kubernetes else None


def paired_chart(
    title: str, pairs: tuple[tuple[str, str, str], ...]
) -> Callable[[Axes, dict[str, dict[str, Any]]], None]:
    """A chart of sandlot's row: for each (label, agent figure, Kubernetes-path
    figure) in `pairs`, the agent's bar (green) beside the Kubernetes path's (grey)."""

    def draw(ax: Axes, by_client: dict[str, dict[str, Any]]) -> None:
        row = by_client["sandlot"]
        xs = range(len(pairs))
        for shift, index, color, label in ((-0.2, 1, "#2e8b57", "agent"), (0.2, 2, "#6e7781", "kubernetes exec")):
            values = [row.get(f"_{pair[index]}") or 0 for pair in pairs]
            ax.bar([x + shift for x in xs], values, width=0.4, color=color, label=label)
        ax.set_xticks(list(xs), [pair[0] for pair in pairs])
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)

    return draw
