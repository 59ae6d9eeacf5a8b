"""Fan out 50 short jobs with bounded concurrency and collect each one's exit
code and log: the shape of a CI suite or a batch of evaluations."""

from __future__ import annotations

import asyncio
import collections
import uuid

import sandlot

IMAGE = "docker.io/library/busybox:1.36"
JOBS = 50
AT_ONCE = 10


async def job(client: sandlot.AsyncClient, limit: asyncio.Semaphore, batch: str, i: int) -> tuple[int, int, str]:
    async with limit:
        sb = await client.sandboxes.create(
            IMAGE,
            command=["sh", "-c", f"echo job {i} squared is $(({i} * {i})); exit $(({i} % 5 == 0))"],
            tags={"batch": batch},
            resources={"cpu": "100m", "memory": "32Mi"},
        )
        status = await sb.wait(["succeeded", "failed"], timeout=300)
        return i, status.exit_code if status.exit_code is not None else -1, (await sb.logs()).strip()


async def main() -> None:
    batch = uuid.uuid4().hex[:8]
    limit = asyncio.Semaphore(AT_ONCE)
    async with sandlot.AsyncClient() as client:
        results = await asyncio.gather(*(job(client, limit, batch, i) for i in range(JOBS)))
        codes = collections.Counter(code for _, code, _ in results)
        print(f"{JOBS} jobs, at most {AT_ONCE} at once: exit codes {dict(sorted(codes.items()))}")
        for i, code, log in results[:3]:
            print(f"  job {i}: exit {code}, log {log!r}")
        purged = await client.sandboxes.purge(tags={"batch": batch})
        print(f"purged {len(purged)} records")


if __name__ == "__main__":
    asyncio.run(main())
