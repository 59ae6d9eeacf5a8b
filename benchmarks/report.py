"""Rows from repetitions, and results.md with its charts from the rows."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.cluster import KUBECTL
from benchmarks.measure import Figures
from benchmarks.scenarios.base import Scenario

# One client's row of a table: display values by figure, and the medians under `_figure`.
Row = dict[str, Any]
# Rows by scenario, size and client.
Table = dict[Scenario, dict[int, dict[str, Row]]]
# Client-side rate limits, equalised: none of the clients throttles itself.
QPS_NOTE = "no client-side rate limit in any client (kubernetes clients have none; kubectl's is lifted)"


def median_row(results: list[Figures]) -> Row:
    """Medians (± half the spread) for display; the medians themselves under `_key`."""
    row: Row = {}
    for key in results[0]:
        values = [r.get(key) for r in results]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            numbers = [float(v) for v in values if v is not None]
            med = statistics.median(numbers)
            spread = max(numbers) - min(numbers)
            row[key] = f"{med:.4g}" + (f" ±{spread / 2:.2g}" if spread else "")
            row[f"_{key}"] = med
        else:
            row[key] = " / ".join(dict.fromkeys(str(v) for v in values))
    return row


def ratio(value: float, base: float | None, higher_is_better: bool) -> str:
    """How many times better sandlot is: above 1 means sandlot is ahead; empty without
    a figure of sandlot's (`base`)."""
    if not base or not value:
        return ""
    return f"{(base / value if higher_is_better else value / base):.2f}x"


def write_results(table: Table, out: Path, quick: bool, minutes: float) -> None:
    """`out`/results.md: the setting, then per scenario and size a table of clients; charts in `out`/charts."""
    versions = {
        name: _version(name) for name in ("sandlot", "kubernetes", "kubernetes_asyncio", "websocket-client", "aiohttp")
    }
    kubectl_version = subprocess.run([KUBECTL, "version", "--client", "-o", "json"], capture_output=True, text=True)
    versions["kubectl"] = json.loads(kubectl_version.stdout or "{}").get("clientVersion", {}).get("gitVersion", "?")
    lines = [
        "# Benchmarks: sandlot and the alternatives",
        "",
        f"Made by `make bench` ({'quick' if quick else 'full'} run) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())},",
        f"in {minutes:.1f} minutes.",
        "",
        f"- Machine: {os.cpu_count()} cores, {_memory_gib():.0f} GiB, Linux {platform.release()}, Python {platform.python_version()},",
        "  shared with other work (absolute figures are noisy; ratios from the same run are what to compare).",
        "- Cluster: the repository's local single-node Kubernetes 1.34 (`make cluster`), containerd 2.3, runc 1.5.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"- Settings: {QPS_NOTE}. The official client runs concurrent work on a thread pool",
        "  of 32; kubernetes_asyncio and sandlot on one event loop; kubectl as one process per command",
        "  (16 at a time for execs).",
        "- Each repetition runs in a fresh process; clients run one after the other. Figures are",
        "  medians ± half the spread of the repetitions (repetitions per client in `reps`).",
        "- `wall_s` and `cpu_s` cover the client's part only (setup with kubectl and imports excluded);",
        "  CPU includes child processes (kubectl's own). `peak_rss_mib` is the worker's peak (kubectl: its",
        "  largest process). `api_requests` are counted at the API server from its audit log.",
        "- `vs sandlot`: the baseline's headline figure against sandlot's, as how many times better",
        "  sandlot is (above 1: sandlot ahead).",
        "",
    ]
    for scenario, sizes in table.items():
        headline, higher_is_better, base_client = scenario.headline, scenario.higher_is_better, scenario.base_client
        lines += [f"## {scenario.name}", "", scenario.description, ""]
        for size, by_client in sizes.items():
            keys = list(dict.fromkeys(k for row in by_client.values() for k in row if not k.startswith("_")))
            compare = len(by_client) > 1
            lines.append(
                f"size {size}; headline figure `{headline}` ({'higher' if higher_is_better else 'lower'} is better):"
            )
            lines.append("")
            lines.append("| client | " + " | ".join(keys) + (f" | vs {base_client} |" if compare else " |"))
            lines.append("|---" * (len(keys) + 1 + compare) + "|")
            base = by_client.get(base_client, {}).get(f"_{headline}")
            for client, row in by_client.items():
                cells = [str(row.get(k, "")) for k in keys]
                if compare:
                    value = row.get(f"_{headline}")
                    cells.append("" if client == base_client or value is None else ratio(value, base, higher_is_better))
                lines.append(f"| {client} | " + " | ".join(cells) + " |")
            lines.append("")
    (out / "results.md").write_text("\n".join(lines))
    charts(table, out / "charts")


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _memory_gib() -> float:
    with open("/proc/meminfo") as meminfo:
        return int(meminfo.readline().split()[1]) / 1024 / 1024


def charts(table: Table, folder: Path) -> None:
    """`folder`/<scenario>-<size>.png: the scenario's own chart, or a bar chart per figure
    in its `chart_figures` with the clients side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    for scenario, sizes in table.items():
        for size, by_client in sizes.items():
            if scenario.draw_chart:
                fig, ax = plt.subplots(figsize=(4.8, 3.6))
                scenario.draw_chart(ax, by_client)
            else:
                figures = [f for f in scenario.chart_figures if any(f"_{f}" in row for row in by_client.values())]
                fig, axes = plt.subplots(1, len(figures), figsize=(3.2 * len(figures), 3.2), squeeze=False)
                for ax, figure in zip(axes[0], figures, strict=True):
                    clients = [c for c in by_client if by_client[c].get(f"_{figure}") is not None]
                    values = [by_client[c][f"_{figure}"] for c in clients]
                    colors = ["#2e8b57" if c == scenario.base_client else "#6e7781" for c in clients]
                    ax.bar(clients, values, color=colors)
                    ax.set_title(figure, fontsize=10)
                    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
            fig.suptitle(f"{scenario.name}, size {size}")
            fig.tight_layout()
            fig.savefig(folder / f"{scenario.name}-{size}.png", dpi=90)
            plt.close(fig)
