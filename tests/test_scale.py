"""What running thousands of sandboxes rests on, checked on the real node: a
client paces its own requests (qps and burst, as client-go), the API server's
own throttling (API Priority and Fairness) slows a fan-out down without losing
or doubling anything, bulk operations work from one paged list, and a record
that vanished (purged elsewhere, or removed by the cluster's pod garbage
collector) is reported as gone by every call. The figures at 1,000 to 10,000 sandboxes come from the scale benchmark
on fake nodes (`make cluster-scale`, benchmarks/scenarios/scale.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import yaml

import sandlot
from conftest import Kubectl, unique
from test_cli import sandlot as run_sandlot

BUSYBOX = "docker.io/library/busybox:1.36"


@pytest.mark.unit
def test_a_rate_that_cannot_be_kept_is_refused_naming_it() -> None:
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(sandlot.InvalidSpecError) as raised:
            sandlot.AsyncClient("x", qps=bad)
        assert raised.value.field == "qps"
    for bad_burst in (0, -5):
        with pytest.raises(sandlot.InvalidSpecError) as raised:
            sandlot.Client("x", burst=bad_burst)
        assert raised.value.field == "burst"
    sandlot.AsyncClient("x", qps=None)  # no limit
    sandlot.AsyncClient("x", qps=0.5, burst=1)


async def test_a_client_paces_its_requests(sandlot_namespace: str) -> None:
    async with sandlot.AsyncClient(sandlot_namespace) as admin:
        sb = await admin.sandboxes.create(BUSYBOX)
    # 4 requests a second, 2 at once: 12 reads need at least (12 - 2) / 4 s
    # (the bucket may have refilled a little while connecting; 2 s is safe).
    async with sandlot.AsyncClient(sandlot_namespace, qps=4, burst=2) as client:
        await asyncio.sleep(1)  # the bucket is full again
        started = time.monotonic()
        await asyncio.gather(*(client.sandboxes.get(sb.name) for _ in range(12)))
        paced = time.monotonic() - started
    assert paced >= 2.0, f"12 reads at 4 per second took {paced:.2f} s"
    async with sandlot.AsyncClient(sandlot_namespace, qps=None) as unlimited:
        await asyncio.gather(*(unlimited.sandboxes.get(sb.name) for _ in range(12)))
        await (await unlimited.sandboxes.get(sb.name)).terminate()


def rejected_by_priority_level(level: str) -> int:
    """Requests the API server has answered 429 on priority level `level` so far."""
    metrics = Kubectl().run("get", "--raw", "/metrics").stdout
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in metrics.splitlines()
        if line.startswith("apiserver_flowcontrol_rejected_requests_total{") and f'priority_level="{level}"' in line
    )


def tight_priority_level(name: str, namespace: str) -> str:
    """A priority level of one concurrency share (3 of the API server's 600 seats),
    nothing lent or borrowed, one queue of one request, and a FlowSchema that puts
    the `sandlot` service account of `namespace` there."""
    return yaml.safe_dump_all(
        [
            {
                "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
                "kind": "PriorityLevelConfiguration",
                "metadata": {"name": name},
                "spec": {
                    "type": "Limited",
                    "limited": {
                        "nominalConcurrencyShares": 1,
                        "lendablePercent": 0,
                        "borrowingLimitPercent": 0,
                        "limitResponse": {
                            "type": "Queue",
                            "queuing": {"queues": 1, "handSize": 1, "queueLengthLimit": 1},
                        },
                    },
                },
            },
            {
                "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
                "kind": "FlowSchema",
                "metadata": {"name": name},
                "spec": {
                    "priorityLevelConfiguration": {"name": name},
                    "matchingPrecedence": 400,
                    "distinguisherMethod": {"type": "ByUser"},
                    "rules": [
                        {
                            "subjects": [
                                {
                                    "kind": "ServiceAccount",
                                    "serviceAccount": {"name": "sandlot", "namespace": namespace},
                                }
                            ],
                            "resourceRules": [
                                {
                                    "verbs": ["*"],
                                    "apiGroups": ["*"],
                                    "resources": ["*"],
                                    "namespaces": ["*"],
                                    "clusterScope": True,
                                }
                            ],
                        }
                    ],
                },
            },
        ]
    )


async def test_the_api_servers_throttling_slows_a_fan_out_down_and_loses_nothing(
    sandlot_namespace: str, service_account_kubeconfig: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    level = unique("tight")
    Kubectl().apply(tight_priority_level(level, sandlot_namespace))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the API server has taken the schema in
            dangling = Kubectl().run(
                "get", "flowschema", level, "-o", 'jsonpath={.status.conditions[?(@.type=="Dangling")].status}'
            )
            if dangling.stdout == "False":
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail(f"FlowSchema {level} was not taken in within 30 s")
        before = rejected_by_priority_level(level)
        monkeypatch.setenv("KUBECONFIG", str(service_account_kubeconfig))
        tag = unique("apf")
        # Two clients without a rate of their own, 20 creates each at once: far
        # more than 3 seats and a queue of one hold. Sandboxes that ask for 64
        # CPUs stay queued: no container is started for them.
        async with (
            sandlot.AsyncClient(sandlot_namespace, qps=None) as first,
            sandlot.AsyncClient(sandlot_namespace, qps=None) as second,
        ):
            made = await asyncio.gather(
                *(
                    client.sandboxes.create(BUSYBOX, resources={"cpu": "64"}, tags={"apf": tag})
                    for client in (first, second)
                    for _ in range(20)
                )
            )
            throttled = rejected_by_priority_level(level) - before
            names = sorted(sb.name for sb in made)
            pods = Kubectl(sandlot_namespace).json("get", "pods", "-l", f"tags.sandlot.dev/apf={tag}")
            assert sorted(pod["metadata"]["name"] for pod in pods["items"]) == names, "one sandbox per create"
            assert len(set(names)) == 40
            report = await first.sandboxes.terminate_many(names)
            assert all(r.terminated and r.error is None for r in report), [r.error for r in report if r.error]
            await second.sandboxes.wait_all(names, "terminated", timeout=120)
            assert sorted(await second.sandboxes.purge(names)) == names
        assert throttled > 0, "the API server answered no 429: the test did not throttle"
    finally:
        Kubectl().run("delete", "flowschema,prioritylevelconfiguration", level, "--ignore-not-found", check=False)


async def test_bulk_operations_over_many_names_and_a_vanished_record(sandlot_namespace: str) -> None:
    async with sandlot.AsyncClient(sandlot_namespace) as client:
        # 60 names: more than a bulk terminate reads one by one, so it lists.
        jobs = await asyncio.gather(
            *(client.sandboxes.create(BUSYBOX, command=["sleep", "600"], tags={"bulk": "many"}) for _ in range(60))
        )
        names = [sb.name for sb in jobs]
        report = await client.sandboxes.terminate_many([*names, "never-made"])
        by_name = {r.name: r for r in report}
        assert all(by_name[n].terminated and by_name[n].error is None for n in names)
        assert not by_name["never-made"].terminated
        assert "not found" in (by_name["never-made"].error or "")
        await client.sandboxes.wait_all(names, "terminated", timeout=120)
        assert sorted(await client.sandboxes.purge(tags={"bulk": "many"})) == sorted(names)

        # A record removed behind sandlot's back (the pod garbage collector
        # removes terminated pods past its threshold) is gone to every call,
        # and a wait on it ends at once.
        sb = await client.sandboxes.create(BUSYBOX, command=["sleep", "600"])
        await sb.wait("running", timeout=120)
        waiting = asyncio.ensure_future(sb.wait("succeeded", timeout=60))
        await asyncio.sleep(0.5)
        Kubectl(sandlot_namespace).run("delete", "pod", sb.name, "--grace-period=0", "--force")
        started = time.monotonic()
        with pytest.raises(sandlot.NotFoundError):
            await waiting
        assert time.monotonic() - started < 30
        for call in (sb.refresh(), sb.logs(), sb.exec("true"), sb.terminate()):
            with pytest.raises(sandlot.NotFoundError):
                await call


def test_the_command_line_takes_a_rate(sandlot_namespace: str) -> None:
    listed = run_sandlot(sandlot_namespace, "--qps", "20", "--burst", "5", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert run_sandlot(sandlot_namespace, "--qps", "none", "list").returncode == 0
    for flags, named in ((["--qps", "0"], "--qps"), (["--qps", "fast"], "--qps"), (["--burst", "0"], "--burst")):
        bad = run_sandlot(sandlot_namespace, *flags, "list")
        assert bad.returncode == 2 and named in bad.stderr, bad.stderr
