"""`kubectl` as a subprocess per command: each step for all pods at once where kubectl
takes many, 16 execs at a time."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from benchmarks.clients.base import Client
from benchmarks.cluster import KUBECTL, NAMESPACE, kubectl, pod_manifest


class KubectlClient(Client):
    name = "kubectl"
    works_in_child_processes = True

    def fan_out(self, commands: dict[str, list[str]]) -> list[bytes]:
        names = list(commands)
        manifests = "\n---\n".join(json.dumps(pod_manifest(name)) for name in names)
        kubectl("apply", "-f", "-", stdin=manifests)
        kubectl("wait", "--for=jsonpath={.status.phase}=Running", "--timeout=600s", *[f"pod/{name}" for name in names])
        with ThreadPoolExecutor(max_workers=min(len(names), 16)) as pool:
            outputs = list(pool.map(lambda name: kubectl("exec", name, "--", *commands[name]).stdout, names))
        kubectl("delete", "pod", "--wait=false", "--grace-period=2", *names)
        return outputs

    def wait_running(self, names: list[str], selector: str) -> None:
        kubectl("wait", "--for=jsonpath={.status.phase}=Running", "--timeout=600s", "pod", "-l", selector)

    def create_wait_terminate(self, names: list[str], batch: str) -> dict[str, object]:
        raise NotImplementedError("the scale scenario compares the Python clients")

    def time_execs(self, pod: str, command: list[str], n: int) -> list[float]:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            kubectl("exec", pod, "--", *command)
            times.append(time.perf_counter() - t)
        return times

    def exec_stdout(self, pod: str, command: list[str]) -> bytes:
        return kubectl("exec", pod, "--", *command).stdout

    def follow_logs(self, pod: str, on_line: Callable[[str], None]) -> None:
        proc = subprocess.Popen([KUBECTL, "-n", NAMESPACE, "logs", "-f", pod], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        for raw in proc.stdout:
            on_line(raw.decode().rstrip("\n"))
        proc.wait()

    def process_start_seconds(self) -> float:
        starts = []
        for _ in range(10):
            t = time.perf_counter()
            subprocess.run([KUBECTL, "version", "--client"], capture_output=True, check=False)
            starts.append(time.perf_counter() - t)
        return statistics.median(starts)

    async def time_native_awaits(self, n: int) -> tuple[float, float]:
        raise NotImplementedError("no native runtime: it is a process per command")

    def time_native_blocking_calls(self, n: int) -> tuple[float, float]:
        raise NotImplementedError("no native runtime: it is a process per command")


CLIENT = KubectlClient()
