"""File transfer: sandlot's file API (through the agent and over a Kubernetes exec)
against `kubectl cp`, a large file and a tree of small ones, up and down, into one
sandbox, side by side in one run; and the client's memory while 1 GiB streams."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import sandlot
from benchmarks.clients.base import Client
from benchmarks.cluster import KUBECTL, NAMESPACE
from benchmarks.measure import Figures, Timed
from benchmarks.scenarios.agent_common import ROUNDS, one_sandbox_both_paths, paired_chart, ratio
from benchmarks.scenarios.base import Scenario

MIB = 1024 * 1024
MB = 1000 * 1000
Way = Callable[[], float]


def kubectl_cp(source: str, destination: str) -> None:
    subprocess.run([KUBECTL, "-n", NAMESPACE, "cp", source, destination], capture_output=True, check=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def file_transfer(client: Client, mib: int) -> Figures:
    """A file of `mib` MiB of random bytes uploaded to one running sandbox and
    downloaded again, sha256 checked both ways (`sha256sum` in the sandbox, then the
    local copy): with `sb.files.write(path, local_path)` / `download` through the
    agent, with the same calls over a Kubernetes exec (exec_path="kubernetes"), and
    with `kubectl cp` (tar over an exec) as a subprocess; 3 rounds, the order turning
    each round. MB/s (10^6 bytes) each way, medians; `ratio` figures are the agent
    path ÷ kubectl cp."""

    async def run() -> Figures:
        rates: dict[str, list[float]] = {}
        with tempfile.TemporaryDirectory() as scratch:
            local = Path(scratch) / "blob"
            with local.open("wb") as f:
                for _ in range(mib):
                    f.write(os.urandom(MIB))
            expected = sha256_file(local)
            async with one_sandbox_both_paths() as sandboxes:
                sb = sandboxes["agent"]
                loop = asyncio.get_running_loop()

                async def check_remote(path: str) -> None:
                    seen = (await sb.exec(["sha256sum", path], check=True)).stdout.split()[0]
                    if seen != expected:
                        raise RuntimeError(f"{path} in the sandbox is not the file sent")

                def check_local(path: Path) -> None:
                    if sha256_file(path) != expected:
                        raise RuntimeError(f"{path} is not the file sent")

                async def through(way: str, round_: int) -> None:
                    remote = f"/tmp/{way}-{round_}"
                    back = Path(scratch) / f"{way}-{round_}"
                    if way == "kubectl":
                        up = await loop.run_in_executor(
                            None, timed, lambda: kubectl_cp(str(local), f"{sb.name}:{remote}")
                        )
                        await check_remote(remote)
                        down = await loop.run_in_executor(
                            None, timed, lambda: kubectl_cp(f"{sb.name}:{remote}", str(back))
                        )
                    else:
                        files = sandboxes["agent" if way == "agent" else "kubernetes"].files
                        started = time.perf_counter()
                        await files.write(remote, local)
                        up = time.perf_counter() - started
                        await check_remote(remote)
                        started = time.perf_counter()
                        await download(files, remote, back)
                        down = time.perf_counter() - started
                    check_local(back)
                    back.unlink()
                    await sb.exec(["rm", remote], check=True)
                    rates.setdefault(f"{way}_up_mb_per_s", []).append(mib * MIB / MB / up)
                    rates.setdefault(f"{way}_down_mb_per_s", []).append(mib * MIB / MB / down)

                ways = ["agent", "kubernetes", "kubectl"]
                for round_ in range(ROUNDS):
                    for way in ways[round_ % 3 :] + ways[: round_ % 3]:
                        await through(way, round_)
        figures: Figures = {name: round(statistics.median(values), 1) for name, values in sorted(rates.items())}
        for direction in ("up", "down"):
            figures[f"{direction}_ratio"] = ratio(
                figures[f"agent_{direction}_mb_per_s"], figures[f"kubectl_{direction}_mb_per_s"]
            )
        return figures

    with Timed() as timing:
        figures = asyncio.run(run())
    return {**timing.figures(client), **figures}


async def download(files: sandlot.AsyncFiles, remote: str, local: Path) -> None:
    """`remote` into `local`, chunk by chunk as `open_read` hands them over."""
    with local.open("wb") as out:
        async for chunk in files.open_read(remote):
            out.write(chunk)


def tree_transfer(client: Client, count: int) -> Figures:
    """A tree of `count` files of 1 KiB (in 10 directories) uploaded to one running
    sandbox and downloaded again, compared file by file: with `sb.files.upload` /
    `download` through the agent and over a Kubernetes exec, and with `kubectl cp`
    of the directory; 3 rounds, the order turning each round. Seconds each way,
    medians; `ratio` figures are the agent path ÷ kubectl cp (lower is better)."""

    async def run() -> Figures:
        seconds: dict[str, list[float]] = {}
        with tempfile.TemporaryDirectory() as scratch:
            source = Path(scratch) / "tree"
            for i in range(count):
                path = source / f"d{i % 10}" / f"f{i}"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(os.urandom(1024))
            expected = {str(p.relative_to(source)): p.read_bytes() for p in source.rglob("*") if p.is_file()}
            async with one_sandbox_both_paths() as sandboxes:
                sb = sandboxes["agent"]
                loop = asyncio.get_running_loop()

                async def through(way: str, round_: int) -> None:
                    remote = f"/tmp/{way}-{round_}"
                    back = Path(scratch) / f"{way}-{round_}"
                    if way == "kubectl":
                        up = await loop.run_in_executor(
                            None, timed, lambda: kubectl_cp(str(source), f"{sb.name}:{remote}")
                        )
                        down = await loop.run_in_executor(
                            None, timed, lambda: kubectl_cp(f"{sb.name}:{remote}", str(back))
                        )
                    else:
                        files = sandboxes["agent" if way == "agent" else "kubernetes"].files
                        started = time.perf_counter()
                        await files.upload(source, remote)
                        up = time.perf_counter() - started
                        started = time.perf_counter()
                        await files.download(remote, back)
                        down = time.perf_counter() - started
                    got = {str(p.relative_to(back)): p.read_bytes() for p in back.rglob("*") if p.is_file()}
                    if got != expected:
                        raise RuntimeError(f"the tree {way} brought back differs")
                    shutil.rmtree(back)
                    await sb.exec(["rm", "-r", remote], check=True)
                    seconds.setdefault(f"{way}_up_s", []).append(up)
                    seconds.setdefault(f"{way}_down_s", []).append(down)

                ways = ["agent", "kubernetes", "kubectl"]
                for round_ in range(ROUNDS):
                    for way in ways[round_ % 3 :] + ways[: round_ % 3]:
                        await through(way, round_)
        figures: Figures = {name: round(statistics.median(values), 3) for name, values in sorted(seconds.items())}
        for direction in ("up", "down"):
            figures[f"{direction}_ratio"] = ratio(figures[f"agent_{direction}_s"], figures[f"kubectl_{direction}_s"])
        return figures

    with Timed() as timing:
        figures = asyncio.run(run())
    return {**timing.figures(client), **figures}


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def file_memory(client: Client, mib: int) -> Figures:
    """`mib` MiB streamed through the agent into a running sandbox from an async
    iterator of 1 MiB chunks (`files.write`), then back with `files.open_read`
    (each chunk hashed and dropped), sha256 checked: the client process's resident
    memory sampled every 20 ms, its highest value above the value before each
    transfer (`up_rss_growth_mib`, `down_rss_growth_mib`), and MB/s each way."""

    async def run() -> Figures:
        block = os.urandom(MIB)
        expected = hashlib.sha256()
        for i in range(mib):
            expected.update(block[i % MIB :] + block[: i % MIB])
        async with one_sandbox_both_paths() as sandboxes:
            files = sandboxes["agent"].files
            peak = [0.0]
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], rss_mib())
                    time.sleep(0.02)

            async def chunks() -> AsyncIterator[bytes]:
                for i in range(mib):
                    yield block[i % MIB :] + block[: i % MIB]

            figures: Figures = {}
            for direction in ("up", "down"):
                before = rss_mib()
                peak[0] = before
                stop.clear()
                sampler = threading.Thread(target=sample)
                sampler.start()
                started = time.perf_counter()
                if direction == "up":
                    await files.write("/tmp/stream", chunks())
                else:
                    got = hashlib.sha256()
                    async for chunk in files.open_read("/tmp/stream"):
                        got.update(chunk)
                    if got.hexdigest() != expected.hexdigest():
                        raise RuntimeError("the streamed file came back different")
                wall = time.perf_counter() - started
                stop.set()
                sampler.join()
                figures[f"{direction}_rss_growth_mib"] = round(peak[0] - before, 1)
                figures[f"{direction}_mb_per_s"] = round(mib * MIB / MB / wall, 1)
            return figures

    with Timed() as timing:
        figures = asyncio.run(run())
    return {**timing.figures(client), **figures}


SCENARIO = Scenario(
    name="file_transfer",
    measure=file_transfer,
    full_sizes=(100,),
    quick_sizes=(1,),
    repeats=1,
    headline="up_ratio",
    higher_is_better=True,
    chart_figures=(),
    clients=("sandlot",),  # both of sandlot's paths and kubectl cp, into one sandbox, in one process
    quick_by_default=False,
    time_limit_s=600,
    draw_chart=paired_chart(
        "MB/s of one file (agent beside kubectl cp)",
        (("up", "agent_up_mb_per_s", "kubectl_up_mb_per_s"), ("down", "agent_down_mb_per_s", "kubectl_down_mb_per_s")),
    ),
)

TREE_SCENARIO = Scenario(
    name="tree_transfer",
    measure=tree_transfer,
    full_sizes=(1000,),
    quick_sizes=(10,),
    repeats=1,
    headline="up_ratio",
    higher_is_better=False,
    chart_figures=(),
    clients=("sandlot",),
    quick_by_default=False,
    time_limit_s=600,
    draw_chart=paired_chart(
        "seconds for a tree of small files (agent beside kubectl cp)",
        (("up", "agent_up_s", "kubectl_up_s"), ("down", "agent_down_s", "kubectl_down_s")),
    ),
)

MEMORY_SCENARIO = Scenario(
    name="file_memory",
    measure=file_memory,
    full_sizes=(1024,),
    quick_sizes=(8,),
    repeats=1,
    headline="up_rss_growth_mib",
    higher_is_better=False,
    chart_figures=("up_rss_growth_mib", "down_rss_growth_mib"),
    clients=("sandlot",),
    quick_by_default=False,
    time_limit_s=600,
)
