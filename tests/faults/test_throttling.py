"""429 and 503 answers on a share of the requests (a proxy between client and
API server): operations succeed through retries, Retry-After is honoured, and
a create whose answer was lost never makes a second sandbox."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import sandlot
from conftest import ADMIN_KUBECONFIG, Kubectl, unique

from .conftest import Row, Scale
from .harness import BUSYBOX, client_through, percentile
from .proxy import FaultProxy

OPERATIONS = ("create", "wait", "exec", "terminate")


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultProxy]:
    p = FaultProxy(ADMIN_KUBECONFIG, tmp_path_factory.mktemp("proxy"))
    yield p
    p.close()


async def test_throttled_and_unavailable_answers_are_retried(
    proxy: FaultProxy, sandlot_namespace: str, scale: Scale, record: Callable[[Row], None], tmp_path: Path
) -> None:
    kubeconfig = proxy.write_kubeconfig(tmp_path / "proxy.kubeconfig")
    duplicates_total = 0
    violations_total = 0
    for rate in scale.throttle_rates:
        tag = unique("throttled")
        latencies: dict[str, list[float]] = defaultdict(list)
        failures: dict[str, list[str]] = defaultdict(list)
        created: list[str] = []
        async with client_through(kubeconfig, sandlot_namespace) as client:
            seen_before = len(proxy.snapshot())
            proxy.set_rate(rate)
            try:
                for _ in range(scale.throttle_rounds):
                    sb: sandlot.AsyncSandbox | None = None
                    for op in OPERATIONS:
                        if sb is None and op != "create":
                            failures[op].append("no sandbox")
                            continue
                        began = time.monotonic()
                        try:
                            if op == "create":
                                sb = await client.sandboxes.create(BUSYBOX, tags={"fault": tag})
                                created.append(sb.name)
                            elif op == "wait" and sb is not None:
                                await sb.wait("running", timeout=120)
                            elif op == "exec" and sb is not None:
                                assert (await sb.exec(["echo", "ok"], timeout=60)).stdout == "ok\n"
                            elif sb is not None:
                                await sb.terminate()
                        except (sandlot.SandlotError, TimeoutError, ConnectionError, AssertionError) as err:
                            failures[op].append(f"{type(err).__name__}: {err}")
                        else:
                            latencies[op].append(time.monotonic() - began)
            finally:
                proxy.set_rate(0)
            seen = proxy.snapshot()[seen_before:]
        pods = await asyncio.to_thread(
            Kubectl(sandlot_namespace).json, "get", "pods", "-l", f"tags.sandlot.dev/fault={tag}"
        )
        duplicates = len(pods["items"]) - len(created)
        violations = sum(1 for s in seen if s.retry_after_violation)
        injected = sum(1 for s in seen if s.fate != "forwarded")
        duplicates_total += max(duplicates, 0)
        violations_total += violations
        rates = ", ".join(
            f"{op} {len(latencies[op])}/{scale.throttle_rounds}"
            f" (p50 {percentile(latencies[op], 50):.2f} s, p99 {percentile(latencies[op], 99):.2f} s)"
            for op in OPERATIONS
        )
        errors = "; ".join(f"{op}: {msgs[0][:120]}" for op, msgs in failures.items() if msgs)
        record(
            Row(
                "429/503 injected by a proxy",
                f"{rate:.0%} of {len(seen)} requests answered 429 (Retry-After 1 s) or 503 ({injected} injected), "
                f"{scale.throttle_rounds} rounds of create, wait, exec, terminate",
                f"sandboxes beyond those create returned (duplicates, or left by a create that failed) {duplicates} "
                f"(want 0); Retry-After not honoured {violations} times (want 0)"
                + (f"; first failures: {errors}" if errors else ""),
                f"succeeded: {rates}",
                duplicates == 0 and violations == 0,
            )
        )
        if pods["items"]:
            await asyncio.to_thread(
                Kubectl(sandlot_namespace).run, "delete", "pods", "-l", f"tags.sandlot.dev/fault={tag}", "--wait=false"
            )
    assert duplicates_total == 0
    assert violations_total == 0
