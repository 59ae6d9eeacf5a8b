"""Volumes shared across sandboxes: one sandbox writes, a later one reads."""

from __future__ import annotations

import asyncio
import uuid

import sandlot

IMAGE = "docker.io/library/busybox:1.36"


async def main() -> None:
    async with sandlot.AsyncClient() as client:
        volume = await client.volumes.create(f"shared-{uuid.uuid4().hex[:6]}", size="64Mi")
        print(f"created volume {volume.name!r}")

        writer = await client.sandboxes.create(
            IMAGE,
            command=["sh", "-c", "date -u > /data/stamp; echo hello > /data/greeting"],
            volume_mounts={"/data": volume.name},
        )
        await writer.wait("succeeded", timeout=120)
        print(f"{writer.name} wrote to it and ended")

        async with await client.sandboxes.create(IMAGE, volume_mounts={"/data": f"{volume.name}:ro"}) as reader:
            await reader.wait("running", timeout=120)
            print(f"attached to: {(await client.volumes.get(volume.name)).attached_to}")
            print(f"{reader.name} reads: {(await reader.exec(['cat', '/data/greeting'])).stdout.strip()!r}")

        await client.volumes.delete(volume.name)
        print(f"deleted volume {volume.name!r}")


if __name__ == "__main__":
    asyncio.run(main())
