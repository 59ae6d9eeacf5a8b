"""The official `kubernetes` client: blocking calls, concurrent work on a thread pool,
waits by polling (by one watch of the namespace for a batch at scale), exec through `stream()`."""

# Written as its users write it (manifests as dicts, raw `_preload_content=False`
# returns, a pod's status read as present), which its annotations do not describe.
# mypy: disable-error-code="arg-type,attr-defined,union-attr,no-untyped-call"

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import urllib3
from kubernetes import client, config, watch
from kubernetes.stream import stream

from benchmarks.clients.base import DELETE_ROUNDS, Client
from benchmarks.cluster import NAMESPACE, kwok_pod_manifest, pod_manifest

# Threads for a batch of creates at scale (and a pooled connection each).
THREADS = 100


def core_api() -> client.CoreV1Api:
    """An API client, the kubeconfig loaded (also for the clients `exec_collect` makes)."""
    config.load_kube_config()
    return client.CoreV1Api()


def exec_collect(name: str, command: list[str]) -> tuple[bytes, int]:
    """Exec with `stream()`, collecting stdout and the exit code, as a user's exec does.

    `stream()` patches the API client it is given while it runs, so each exec
    gets a client of its own (the usual workaround when threads share one)."""
    exec_api = client.CoreV1Api(client.ApiClient())
    resp = stream(
        exec_api.connect_get_namespaced_pod_exec,
        name,
        NAMESPACE,
        command=command,
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
        binary=True,
    )
    out = bytearray()
    while resp.is_open():
        resp.update(timeout=1)
        if resp.peek_stdout():
            out += resp.read_stdout()
        if resp.peek_stderr():
            resp.read_stderr()
    resp.close()
    return bytes(out), resp.returncode if resp.returncode is not None else -1


class KubernetesClient(Client):
    name = "kubernetes"

    def fan_out(self, commands: dict[str, list[str]]) -> list[bytes]:
        api = core_api()

        def one(name: str) -> bytes:
            api.create_namespaced_pod(NAMESPACE, pod_manifest(name))
            while api.read_namespaced_pod(name, NAMESPACE).status.phase != "Running":
                time.sleep(0.5)
            out, _ = exec_collect(name, commands[name])
            api.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=2)
            return out

        with ThreadPoolExecutor(max_workers=min(len(commands), 32)) as pool:
            return list(pool.map(one, commands))

    def wait_running(self, names: list[str], selector: str) -> None:
        api = core_api()

        def one(name: str) -> None:
            while api.read_namespaced_pod(name, NAMESPACE).status.phase != "Running":
                time.sleep(1)

        with ThreadPoolExecutor(max_workers=32) as pool:
            list(pool.map(one, names))

    def create_wait_terminate(self, names: list[str], batch: str) -> dict[str, object]:
        config.load_kube_config()
        configuration = client.Configuration.get_default_copy()
        configuration.connection_pool_maxsize = THREADS  # a connection per thread
        api = client.CoreV1Api(client.ApiClient(configuration))
        selector = f"batch={batch}"
        expected = set(names)
        running: set[str] = set()
        # One watch of the batch, in a thread of its own, from the resourceVersion of a
        # list made before the creates, so no event is missed; started again where it ended.
        version = api.list_namespaced_pod(NAMESPACE, label_selector=selector).metadata.resource_version

        def watch_batch() -> None:
            nonlocal version
            while True:
                w = watch.Watch()
                for event in w.stream(
                    api.list_namespaced_pod,
                    NAMESPACE,
                    label_selector=selector,
                    resource_version=version,
                    timeout_seconds=3600,
                ):
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"watch error: {event['raw_object']}")
                    pod = event["object"]
                    version = pod.metadata.resource_version
                    if event["type"] != "DELETED" and pod.status.phase == "Running":
                        running.add(pod.metadata.name)
                        if expected <= running:
                            w.stop()
                            return

        seen: dict[str, object] = {}
        with ThreadPoolExecutor(max_workers=1) as watching:
            watcher = watching.submit(watch_batch)
            with ThreadPoolExecutor(max_workers=THREADS) as pool:
                list(pool.map(lambda name: api.create_namespaced_pod(NAMESPACE, kwok_pod_manifest(name, batch)), names))
            seen["created"] = len(names)
            watcher.result(timeout=3600)
        seen["waited_at"] = time.time()
        seen["running"] = len(running & expected)
        # Its answer is the list of pods deleted, which the typed return (V1Status) drops: read as JSON.
        # Sent again while pods of the batch are left (see DELETE_ROUNDS).
        ended = left = 0
        for _ in range(DELETE_ROUNDS):
            try:
                deleted = api.delete_collection_namespaced_pod(
                    NAMESPACE, label_selector=selector, grace_period_seconds=0, _preload_content=False
                )
                ended += len(json.loads(deleted.data)["items"])
            except client.ApiException as err:
                if err.status != 504:
                    raise
            except urllib3.exceptions.ProtocolError:
                pass  # the connection closed past the API server's 60 s: deleted in part
            left = len(api.list_namespaced_pod(NAMESPACE, label_selector=selector).items)
            if not left:
                break
        # A 504 names none of the pods it deleted: count those no longer there.
        seen["ended"] = len(names) - left
        seen["delete_rounds_answered"] = ended
        return seen

    def time_execs(self, pod: str, command: list[str], n: int) -> list[float]:
        core_api()
        times = []
        for _ in range(n):
            t = time.perf_counter()
            exec_collect(pod, command)
            times.append(time.perf_counter() - t)
        return times

    def exec_stdout(self, pod: str, command: list[str]) -> bytes:
        core_api()
        return exec_collect(pod, command)[0]

    def follow_logs(self, pod: str, on_line: Callable[[str], None]) -> None:
        api = core_api()
        resp = api.read_namespaced_pod_log(pod, NAMESPACE, follow=True, _preload_content=False)
        pending = b""
        for raw in resp.stream():
            *complete, pending = (pending + raw).split(b"\n")
            for line in complete:
                on_line(line.decode())
        if pending:
            on_line(pending.decode())

    def process_start_seconds(self) -> None:
        return None  # no process per call

    async def time_native_awaits(self, n: int) -> tuple[float, float]:
        raise NotImplementedError("no native runtime: every call blocks its thread")

    def time_native_blocking_calls(self, n: int) -> tuple[float, float]:
        raise NotImplementedError("no native runtime: every call blocks its thread")


CLIENT = KubernetesClient()
