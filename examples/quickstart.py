"""Quickstart: create a sandbox, run code in it, read its logs, terminate it.

Run it with `make demo`, or `python examples/quickstart.py` with KUBECONFIG set.
"""

from __future__ import annotations

import asyncio
import time

import sandlot

IMAGE = "docker.io/library/python:3.11-slim"


async def main() -> None:
    async with sandlot.AsyncClient() as client:
        print(f"namespace {client.namespace!r}")
        started = time.monotonic()
        sb = await client.sandboxes.create(IMAGE, tags={"example": "quickstart"}, ttl_seconds=600)
        print(f"created sandbox {sb.name!r} from {IMAGE}")

        await sb.wait("running", timeout=120)
        print(f"running after {time.monotonic() - started:.1f}s")

        result = await sb.exec(["python3", "-c", "import platform; print(6 * 7, platform.python_version())"])
        print(f"exec -> exit code {result.exit_code}, stdout {result.stdout!r}")

        failing = await sb.exec("echo 'to stderr' >&2; exit 7")
        print(f"exec -> exit code {failing.exit_code}, stderr {failing.stderr!r}")

        job = await client.sandboxes.create(IMAGE, command=["python3", "-c", "print('hello from a one-off job')"])
        status = await job.wait(["succeeded", "failed"], timeout=120)
        print(f"job {job.name!r} ended {status.phase} (exit code {status.exit_code}); logs: {await job.logs()!r}")

        status = await sb.terminate()
        print(f"terminated {sb.name!r}: phase {status.phase}")


if __name__ == "__main__":
    asyncio.run(main())
