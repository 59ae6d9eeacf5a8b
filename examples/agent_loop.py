"""An agent's tool-use loop: every task gets a fresh sandbox, the generated code
runs there, the agent reads the result, and the sandbox is terminated.

The "model" here is a list of canned answers, so the example runs offline.
"""

from __future__ import annotations

import asyncio

import sandlot

IMAGE = "docker.io/library/python:3.11-slim"

# What a model might write for each task (one of them is wrong).
GENERATED_CODE = {
    "sum of squares below 100": "print(sum(i * i for i in range(100)))",
    "reverse a word": "print('sandlot'[::-1])",
    "divide by zero": "print(1 / 0)",
}


async def run_task(client: sandlot.AsyncClient, task: str, code: str) -> str:
    """Runs `code` in a fresh sandbox and returns what the agent would see."""
    async with await client.sandboxes.create(IMAGE, tags={"role": "agent-tool"}, ttl_seconds=300) as sb:
        await sb.wait("running", timeout=120)
        result = await sb.exec(["python3", "-"], stdin=code, timeout=60)
        if result.exit_code == 0:
            return f"{task}: {result.stdout.strip()}"
        last_line = result.stderr.strip().splitlines()[-1]
        return f"{task}: failed with exit code {result.exit_code} ({last_line})"


async def main() -> None:
    async with sandlot.AsyncClient() as client:
        answers = await asyncio.gather(*(run_task(client, t, c) for t, c in GENERATED_CODE.items()))
        for answer in answers:
            print(answer)


if __name__ == "__main__":
    asyncio.run(main())
