"""An agent-style worker that runs inside the cluster, next to its sandboxes.

It is what deploy/example-app.yaml runs: a pod with the `sandlot` service
account of deploy/rbac.yaml, no kubeconfig and no namespace configured, so
`sandlot.AsyncClient()` connects with the in-cluster configuration and works in
the pod's own namespace. Each round does what an agent does with a task:

    create a sandbox -> wait until it runs -> exec (a non-zero exit code is a
    result) -> read its logs -> terminate it -> a volume: create, mount, delete

then tries one thing the Role does not grant (listing sandboxes in another
namespace: a Role reaches only its own) and reports the PermissionDeniedError.
Every step prints one JSON line ({"step": ..., ...}) that tools and the tests
read. As a Deployment it runs a round every --interval seconds; with --once it
runs one round and exits 0 (the test runs it that way, as a Job).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from typing import Any

import sandlot

IMAGE = "docker.io/library/busybox:1.36"
TAGS = {"app": "in-cluster-worker"}
# A namespace the Role of deploy/rbac.yaml does not reach (it exists everywhere).
FOREIGN_NAMESPACE = "default"


def emit(step: str, **fields: Any) -> None:
    print(json.dumps({"step": step, **fields}), flush=True)


async def one_round(client: sandlot.AsyncClient) -> None:
    emit("connect", namespace=client.namespace, namespace_source=client.namespace_source)

    # A sandbox that says it is ready, then idles, accepting exec.
    sb = await client.sandboxes.create(
        IMAGE, command=["sh", "-c", "echo worker sandbox ready; exec sleep 3600"], tags=TAGS, ttl_seconds=600
    )
    emit("create", sandbox=sb.name, phase=str(sb.status.phase))
    status = await sb.wait("running", timeout=120)
    emit("wait", sandbox=sb.name, phase=str(status.phase))

    result = await sb.exec("echo computed 42; echo 'a warning' >&2; exit 3")
    emit("exec", sandbox=sb.name, exit_code=result.exit_code, stdout=result.stdout, stderr=result.stderr)

    emit("logs", sandbox=sb.name, logs=await sb.logs())

    status = await sb.terminate()
    emit("terminate", sandbox=sb.name, phase=str(status.phase), reason=str(status.termination_reason))

    volume = await client.volumes.create(f"worker-{uuid.uuid4().hex[:8]}", size="16Mi", tags=TAGS)
    writer = await client.sandboxes.create(
        IMAGE,
        command=["sh", "-c", "echo kept > /data/note && cat /data/note"],
        volume_mounts={"/data": volume.name},
        tags=TAGS,
    )
    status = await writer.wait("succeeded", timeout=120)
    logs = await writer.logs()
    await client.volumes.delete(volume.name)  # also purges the ended sandbox that mounted it
    emit(
        "volume",
        volume=volume.name,
        sandbox=writer.name,
        phase=str(status.phase),
        logs=logs,
        deleted=volume.name not in [v.name for v in await client.volumes.list()],
    )

    try:
        async with sandlot.AsyncClient(FOREIGN_NAMESPACE) as foreign:
            await foreign.sandboxes.list()
    except sandlot.PermissionDeniedError as err:
        emit(
            "refused",
            error=type(err).__name__,
            namespace=err.namespace,
            namespace_source=err.namespace_source,
            message=str(err),
        )
    else:
        emit("refused", error=None, message=f"listing sandboxes in {FOREIGN_NAMESPACE!r} was allowed")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", action="store_true", help="run one round and exit (as a Job)")
    parser.add_argument("--interval", type=float, default=300.0, help="seconds between rounds (as a Deployment)")
    args = parser.parse_args()
    async with sandlot.AsyncClient() as client:  # no namespace: the pod's own
        while True:
            await one_round(client)
            emit("done")
            if args.once:
                return 0
            await asyncio.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
