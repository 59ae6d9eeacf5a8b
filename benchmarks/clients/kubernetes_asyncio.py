"""`kubernetes_asyncio`: one event loop and one ApiClient per operation, a watch per
waited pod (one watch of the namespace for a batch at scale), a websocket client per exec."""

# Written as its users write it (manifests as dicts, raw `_preload_content=False`
# returns), which its annotations do not describe.
# mypy: disable-error-code="arg-type,attr-defined"

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.stream import WsApiClient

from benchmarks.clients.base import DELETE_ROUNDS, Client
from benchmarks.cluster import NAMESPACE, kwok_pod_manifest, pod_manifest


async def exec_collect(name: str, command: list[str]) -> tuple[bytes, int]:
    """Exec over a websocket client of its own, collecting stdout and the exit code, as a user's exec does."""
    ws_api = WsApiClient()
    v1 = client.CoreV1Api(api_client=ws_api)
    out = bytearray()
    code = -1
    ws = await v1.connect_get_namespaced_pod_exec(
        name, NAMESPACE, command=command, stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False
    )
    async with ws as stream:
        async for msg in stream:
            data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
            if data and data[0] == 1:
                out += data[1:]
            elif data and data[0] == 3:
                status = json.loads(data[1:])
                if status.get("status") == "Success":
                    code = 0
                else:
                    causes = status.get("details", {}).get("causes", [])
                    code = int(next((c["message"] for c in causes if c.get("reason") == "ExitCode"), -1))
    await ws_api.close()
    return bytes(out), code


async def watch_until_running(v1: client.CoreV1Api, name: str) -> None:
    """Watch pod `name` (a watch of its own) until it runs."""
    w = watch.Watch()
    async for event in w.stream(
        v1.list_namespaced_pod, NAMESPACE, field_selector=f"metadata.name={name}", timeout_seconds=600
    ):
        if event["object"].status.phase == "Running":
            w.stop()


class KubernetesAsyncioClient(Client):
    name = "kubernetes_asyncio"

    def fan_out(self, commands: dict[str, list[str]]) -> list[bytes]:
        async def run() -> list[bytes]:
            await config.load_kube_config()
            async with client.ApiClient() as api_client:
                v1 = client.CoreV1Api(api_client)

                async def one(name: str) -> bytes:
                    await v1.create_namespaced_pod(NAMESPACE, pod_manifest(name))
                    await watch_until_running(v1, name)
                    out, _ = await exec_collect(name, commands[name])
                    await v1.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=2)
                    return out

                return await asyncio.gather(*(one(name) for name in commands))

        return asyncio.run(run())

    def wait_running(self, names: list[str], selector: str) -> None:
        async def run() -> None:
            await config.load_kube_config()
            async with client.ApiClient() as api_client:
                v1 = client.CoreV1Api(api_client)
                await asyncio.gather(*(watch_until_running(v1, name) for name in names))

        asyncio.run(run())

    def create_wait_terminate(self, names: list[str], batch: str) -> dict[str, object]:
        seen: dict[str, object] = {}

        async def run() -> None:
            await config.load_kube_config()
            async with client.ApiClient() as api_client:
                v1 = client.CoreV1Api(api_client)
                selector = f"batch={batch}"
                expected = set(names)
                running: set[str] = set()
                # One watch of the batch, from the resourceVersion of a list made before
                # the creates, so no event is missed; started again where it ended.
                listed = await v1.list_namespaced_pod(NAMESPACE, label_selector=selector)
                version = listed.metadata.resource_version

                async def watch_batch() -> None:
                    nonlocal version
                    while True:
                        w = watch.Watch()
                        async for event in w.stream(
                            v1.list_namespaced_pod,
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

                watcher = asyncio.create_task(watch_batch())
                limit = asyncio.Semaphore(100)

                async def one(name: str) -> None:
                    async with limit:
                        await v1.create_namespaced_pod(NAMESPACE, kwok_pod_manifest(name, batch))

                await asyncio.gather(*(one(name) for name in names))
                seen["created"] = len(names)
                await asyncio.wait_for(watcher, 3600)
                seen["waited_at"] = time.time()
                seen["running"] = len(running & expected)
                # Its answer is the list of pods deleted, which the typed return (V1Status) drops: read as JSON.
                # Sent again while pods of the batch are left (see DELETE_ROUNDS).
                ended = left = 0
                for _ in range(DELETE_ROUNDS):
                    # The raw aiohttp answer (_preload_content=False), not the V1Status typed.
                    # The API server ends a request past its 60 s with a 504 or by
                    # closing the connection; either way the next round deletes the rest.
                    try:
                        deleted: Any = await v1.delete_collection_namespaced_pod(
                            NAMESPACE, label_selector=selector, grace_period_seconds=0, _preload_content=False
                        )
                    except aiohttp.ServerDisconnectedError:
                        deleted = None
                    if deleted is not None:
                        if deleted.status == 200:
                            ended += len((await deleted.json())["items"])
                        elif deleted.status != 504:
                            raise RuntimeError(f"delete_collection answered {deleted.status}: {await deleted.text()}")
                        deleted.release()
                    left = len((await v1.list_namespaced_pod(NAMESPACE, label_selector=selector)).items)
                    if not left:
                        break
                # A 504 names none of the pods it deleted: count those no longer there.
                seen["ended"] = len(names) - left
                seen["delete_rounds_answered"] = ended

        asyncio.run(run())
        return seen

    def time_execs(self, pod: str, command: list[str], n: int) -> list[float]:
        times: list[float] = []

        async def run() -> None:
            await config.load_kube_config()
            for _ in range(n):
                t = time.perf_counter()
                await exec_collect(pod, command)
                times.append(time.perf_counter() - t)

        asyncio.run(run())
        return times

    def exec_stdout(self, pod: str, command: list[str]) -> bytes:
        received: list[bytes] = []  # kept out of asyncio.run's return: it reprs its result, costly at 100 MiB

        async def run() -> None:
            await config.load_kube_config()
            received.append((await exec_collect(pod, command))[0])

        asyncio.run(run())
        return received[0]

    def follow_logs(self, pod: str, on_line: Callable[[str], None]) -> None:
        async def run() -> None:
            await config.load_kube_config()
            async with client.ApiClient() as api_client:
                v1 = client.CoreV1Api(api_client)
                resp = await v1.read_namespaced_pod_log(pod, NAMESPACE, follow=True, _preload_content=False)
                while line := await resp.content.readline():
                    on_line(line.decode().rstrip("\n"))

        asyncio.run(run())

    def process_start_seconds(self) -> None:
        return None  # no process per call

    async def time_native_awaits(self, n: int) -> tuple[float, float]:
        raise NotImplementedError("no native runtime: its calls are coroutines on the caller's loop")

    def time_native_blocking_calls(self, n: int) -> tuple[float, float]:
        raise NotImplementedError("no native runtime: its calls are coroutines on the caller's loop")


CLIENT = KubernetesAsyncioClient()
