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


async def test_claims_from_a_pool_under_throttling_take_each_warm_sandbox_once(
    proxy: FaultProxy, sandlot_namespace: str, scale: Scale, record: Callable[[Row], None], tmp_path: Path
) -> None:
    """Concurrent creates from a pool while a share of the requests (the
    claim's patch included) is refused: each warm sandbox goes to one create,
    a claim whose answer was lost is recognised by its token, and no claimed
    sandbox is left that no create returned."""
    kubeconfig = proxy.write_kubeconfig(tmp_path / "proxy.kubeconfig")
    claims = scale.throttle_rounds
    pool = unique("tpool")
    tag = unique("claimed")
    rate = max(scale.throttle_rates)
    async with sandlot.AsyncClient(sandlot_namespace) as admin:
        await admin.pools.create(pool, BUSYBOX, size=claims, wait=300)
        async with client_through(kubeconfig, sandlot_namespace) as client:
            seen_before = len(proxy.snapshot())
            proxy.set_rate(rate)
            began = time.monotonic()
            try:
                outcomes = await asyncio.gather(
                    *(client.sandboxes.create(pool=pool, tags={"fault": tag}) for _ in range(claims)),
                    return_exceptions=True,
                )
            finally:
                proxy.set_rate(0)
            took = time.monotonic() - began
            seen = proxy.snapshot()[seen_before:]
        made = [o for o in outcomes if isinstance(o, sandlot.AsyncSandbox)]
        failed = [f"{type(o).__name__}: {o}" for o in outcomes if not isinstance(o, sandlot.AsyncSandbox)]
        pods = await asyncio.to_thread(
            Kubectl(sandlot_namespace).json, "get", "pods", "-l", f"tags.sandlot.dev/fault={tag}"
        )
        # A claim dropped with its answer lost terminates what it took: only
        # sandboxes nobody terminated count as kept.
        kept = {
            p["metadata"]["name"]
            for p in pods["items"]
            if "sandlot.dev/terminated-at" not in (p["metadata"].get("annotations") or {})
        }
        returned = {sb.name for sb in made}
        stray = kept - returned
        warm = sum(sb.status.pool_fallback is None for sb in made)
        injected = sum(1 for s in seen if s.fate != "forwarded")
        record(
            Row(
                "429/503 during claims from a pool",
                f"{claims} creates at once from a full pool of {claims}, {rate:.0%} of {len(seen)} requests "
                f"answered 429 or 503 ({injected} injected)",
                f"claimed sandboxes no create returned {len(stray)} (want 0); sandboxes returned twice "
                f"{len(made) - len(returned)} (want 0)" + (f"; first failure: {failed[0][:120]}" if failed else ""),
                f"{len(made)}/{claims} creates returned ({warm} warm) in {took:.1f} s",
                not stray and len(made) == len(returned),
            )
        )
        await admin.sandboxes.terminate_many(made)
        await admin.pools.delete(pool)
    assert len(made) == len(returned), "a sandbox was returned to two creates"
    assert not stray, f"claimed but never returned: {sorted(stray)}"
