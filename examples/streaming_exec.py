"""Streaming: read a command's output while it runs, feed its stdin, and follow
a sandbox's log until it ends."""

from __future__ import annotations

import asyncio

import sandlot

IMAGE = "docker.io/library/python:3.11-slim"


async def main() -> None:
    async with sandlot.AsyncClient() as client:
        async with await client.sandboxes.create(IMAGE) as sb:
            await sb.wait("running", timeout=120)

            progress = "import time\nfor i in range(1, 4):\n    print(f'step {i}/3', flush=True)\n    time.sleep(0.3)\n"
            async with await sb.spawn(["python3", "-c", progress]) as proc:
                async for chunk in proc.stdout:
                    print("live:", chunk.decode().strip())
                print("exit code", await proc.wait())

            proc = await sb.spawn(["sort"], stdin=True)
            for word in ["pear", "apple", "fig"]:
                await proc.write(word + "\n")
            await proc.close_stdin()
            print("sorted:", (await proc.stdout.read_all()).decode().split())
            await proc.wait()

        job = await client.sandboxes.create(
            IMAGE, command=["sh", "-c", "for i in 1 2 3; do echo tick $i; sleep 0.2; done"]
        )
        async for line in job.stream_logs(follow=True):
            print("log:", line)
        print("job ended", (await job.refresh()).phase)


if __name__ == "__main__":
    asyncio.run(main())
