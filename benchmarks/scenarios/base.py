"""What a scenario is: a workload measured for each client at each size."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from benchmarks.clients import NAMES
from benchmarks.clients.base import Client
from benchmarks.measure import Figures

if TYPE_CHECKING:
    from matplotlib.axes import Axes


@dataclass(frozen=True)
class Scenario:
    """`measure(client, size)` runs one repetition in a worker process and returns its
    figures; its docstring describes the scenario in results.md. Figures named with a
    leading underscore are for the runner (`_window`: the timed part, for the audit log)."""

    name: str
    measure: Callable[[Client, int], Figures]
    full_sizes: tuple[int, ...]
    quick_sizes: tuple[int, ...]
    # Repetitions per client in a full run (a quick run makes one).
    repeats: int
    # The figure the scenario is judged by, and whether more is better.
    headline: str
    higher_is_better: bool
    # Figures charted, one bar chart each, clients side by side.
    chart_figures: tuple[str, ...]
    # The clients measured, by name, in the order of the table.
    clients: tuple[str, ...] = NAMES
    # The client the others are compared with (the `vs` column).
    base_client: str = "sandlot"
    # Whether a `--quick` run without `--only` runs it (the smoke test's set of
    # scenarios; the others run quick when named with `--only`).
    quick_by_default: bool = True
    # Clients that run once even where the others repeat.
    runs_once: tuple[str, ...] = ()
    # Seconds a run may take before it is stopped and reported as such.
    time_limit_s: int = 1200
    # Open watches at the API server sampled each second while a run goes (`max_open_watches`).
    samples_open_watches: bool = False
    # The API server's median time per exec in the timed part, from its audit log (`server_p50_ms`).
    reports_server_exec_time: bool = False
    # Draws the scenario's one chart from its rows by client, in place of the bar charts.
    draw_chart: Callable[[Axes, dict[str, dict[str, Any]]], None] | None = None
    # What the scenario's runs need around them, held by the runner from before the
    # first run to after the last (e.g. a cluster of its own, brought up and, if it
    # was not up before, taken down again).
    surroundings: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext

    @property
    def description(self) -> str:
        return " ".join((self.measure.__doc__ or "").split())
