"""Two clients at once: two sandlot processes, each with an identity of its own, fan out
n sandboxes each on the scale cluster at the same moment, while API Priority and
Fairness holds both to a small share of the API server, so it answers 429 to what
does not fit. What the figures show: whether sandlot slows down and loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from benchmarks.clients.base import Client
from benchmarks.cluster import NAMESPACE, REPO, kubectl
from benchmarks.measure import Figures, Timed, audit_events, audit_log_size
from benchmarks.scenarios.base import Scenario
from benchmarks.scenarios.scale import DRAIN_S, FAKE_NODES, Observer, fake_nodes_ready, left, scale_cluster_up

CONTENDERS = ("contender-a", "contender-b")
# The priority level both contenders' requests go to (and only theirs): one share of
# the API server's concurrency (600 seats here: --max-requests-inflight 400 and
# --max-mutating-requests-inflight 200; about 245 shares in all, so 3 seats), none
# lent or borrowed, and short queues, so a burst draws 429s instead of waiting.
PRIORITY_LEVEL = "sandlot-bench-contenders"
FLOW_CONTROL: list[dict[str, Any]] = [
    {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": PRIORITY_LEVEL},
        "spec": {
            "type": "Limited",
            "limited": {
                "nominalConcurrencyShares": 1,
                "lendablePercent": 0,
                "borrowingLimitPercent": 0,
                "limitResponse": {"type": "Queue", "queuing": {"queues": 8, "handSize": 2, "queueLengthLimit": 10}},
            },
        },
    },
    {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": PRIORITY_LEVEL},
        "spec": {
            "priorityLevelConfiguration": {"name": PRIORITY_LEVEL},
            "matchingPrecedence": 500,
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [
                        {"kind": "ServiceAccount", "serviceAccount": {"name": sa, "namespace": NAMESPACE}}
                        for sa in CONTENDERS
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
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                }
            ],
        },
    },
]
# The contenders' accounts, bound to the Role of deploy/rbac.yaml (applied first).
ACCOUNTS: list[dict[str, Any]] = [
    manifest
    for sa in CONTENDERS
    for manifest in (
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": sa},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sandlot"},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}],
        },
    )
]
# How long the contenders may take, inside the scenario's own limit (at which the runner
# kills this process, and the contenders with their sandboxes would be left running).
CONTENDER_LIMIT_S = 3000
# One contender, in a process of its own: argv[1] the batch, argv[2] the name prefix,
# argv[3] n; prints its figures as one line of JSON.
CONTENDER = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[4])
from benchmarks.clients.sandlot import SandlotClient
batch, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
began = time.perf_counter()
try:
    seen = SandlotClient().create_wait_terminate([f"{prefix}{i}" for i in range(n)], batch)
except Exception as err:
    seen = {"error": f"{type(err).__name__}: {err}"[:500]}
seen["wall_s"] = round(time.perf_counter() - began, 2)
seen["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
print(json.dumps(seen))
"""


def kubeconfig_of(account: str, path: Path) -> None:
    """A kubeconfig at `path` that authenticates as service account `account` only."""
    admin = yaml.safe_load(kubectl("config", "view", "--raw", "--minify").stdout)
    cluster = admin["clusters"][0]["cluster"]
    token = kubectl("create", "token", account, "--duration", "2h").stdout.decode().strip()
    if not token:
        raise RuntimeError(f"no token for service account {account}")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "c", "user": account, "namespace": NAMESPACE}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))


def apply(manifests: list[dict[str, Any]]) -> None:
    done = kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(manifests))
    if done.returncode != 0:
        raise RuntimeError(f"kubectl apply failed: {done.stderr.decode()[-2000:]}")


def contenders_set_up(workdir: Path) -> list[Path]:
    """Each contender's kubeconfig, with the accounts, their Role and the priority level
    in place."""
    done = kubectl("apply", "-f", str(REPO / "deploy" / "rbac.yaml"))
    if done.returncode != 0:
        raise RuntimeError(f"applying deploy/rbac.yaml failed: {done.stderr.decode()[-2000:]}")
    apply(ACCOUNTS)
    apply(FLOW_CONTROL)
    for account in CONTENDERS:
        kubeconfig_of(account, workdir / f"{account}.kubeconfig")
    return [workdir / f"{account}.kubeconfig" for account in CONTENDERS]


def server_answers(window: list[float], offset: int) -> dict[str, dict[str, int]]:
    """By contender: the requests the API server received from it within `window` and
    how many it answered 429."""
    requests: dict[str, set[str]] = {account: set() for account in CONTENDERS}
    throttled = dict.fromkeys(CONTENDERS, 0)
    for event in audit_events(window, offset):
        account = event.get("user", {}).get("username", "").rsplit(":", 1)[-1]
        if account not in requests:
            continue
        requests[account].add(event["auditID"])
        if event["stage"] == "ResponseComplete" and event.get("responseStatus", {}).get("code") == 429:
            throttled[account] += 1
    return {a: {"requests": len(requests[a]), "throttled": throttled[a]} for a in CONTENDERS}


def contention(client: Client, n: int) -> Figures:
    """On the scale cluster (50 fake KWOK nodes), two sandlot processes start at once,
    each as a service account of its own (deploy/rbac.yaml's Role), each creating n
    sandboxes as the scale scenario does (100 creates in flight, the default request
    rate of 50 requests/s with bursts of 300), waiting for all to run, terminating and
    purging them. A FlowSchema puts both accounts' requests, and only theirs, on a
    priority level of one concurrency share (3 seats of the API server's 600), no
    borrowing, 8 queues of 10: API Priority and Fairness answers 429 to what does not
    fit. `throttled` counts the 429 answers the API server gave the two in the benchmark
    namespace (its audit log covers only that: cluster-scope requests are not counted),
    `requests_per_sandbox` all their requests ÷ 2n; `wall_s_a`/`wall_s_b` each
    contender's time; `cpu_s` both processes' CPU time; `peak_rss_mib` the larger of
    their peaks. A separate watch (kubectl) sees every pod event: `lost` counts pods
    it never saw running, `duplicated` pods beyond one per name, `left` pods still
    there after both returned and the deletions drained. `errors` names what either
    contender raised (nothing expected)."""
    if client.name != "sandlot":
        raise NotImplementedError("the contention scenario measures sandlot's back-off")
    if (nodes_ready := fake_nodes_ready()) != FAKE_NODES:
        raise RuntimeError(f"{nodes_ready} of {FAKE_NODES} fake nodes Ready")
    batch = uuid.uuid4().hex[:6]
    prefixes = [f"cont-{batch}-{account[-1]}-" for account in CONTENDERS]
    workdir = Path(f"/tmp/sandlot-bench-contention-{batch}")
    workdir.mkdir()
    log = workdir / "events"
    observer = Observer(log)
    try:
        kubeconfigs = contenders_set_up(workdir)
        time.sleep(2)  # the observer's watch open
        offset = audit_log_size()
        with Timed() as timed:
            procs = [
                subprocess.Popen(
                    [sys.executable, "-c", CONTENDER, batch, prefix, str(n), str(REPO)],
                    env={**os.environ, "KUBECONFIG": str(kubeconfig)},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for prefix, kubeconfig in zip(prefixes, kubeconfigs, strict=True)
            ]
            try:
                outputs = [proc.communicate(timeout=CONTENDER_LIMIT_S) for proc in procs]
            finally:
                for proc in procs:
                    proc.kill()  # (if still running: past the limit)
        reports: list[dict[str, Any]] = []
        for proc, (out, err) in zip(procs, outputs, strict=True):
            lines = out.strip().splitlines()
            reports.append(json.loads(lines[-1]) if proc.returncode == 0 and lines else {"error": err[-500:]})
        deadline = time.monotonic() + DRAIN_S
        while any(left(prefix) for prefix in prefixes) and time.monotonic() < deadline:
            time.sleep(1)
        remaining = sum(left(prefix) for prefix in prefixes)
        time.sleep(1)  # the observer's last events
    finally:
        observer.stop()
        events = [e for prefix in prefixes for e in observer.events(prefix)]
        interruptions = observer.interruptions()
        kubectl(
            "delete", "pods", "-l", f"tags.sandlot.dev/batch={batch}", "--grace-period=0", "--force", "--wait=false"
        )
        kubectl("delete", "flowschema,prioritylevelconfiguration", PRIORITY_LEVEL, "--ignore-not-found")
        kubectl("delete", "serviceaccount,rolebinding", *CONTENDERS, "--ignore-not-found")
        kubectl("delete", "-f", str(REPO / "deploy" / "rbac.yaml"), "--ignore-not-found")
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()
    answers = server_answers([timed.window_start, timed.window_end], offset)
    expected = {f"{prefix}{i}" for prefix in prefixes for i in range(n)}
    uids: dict[str, set[str]] = {}
    running: set[str] = set()
    for _, kind, name, uid, phase, _ in events:
        uids.setdefault(name, set()).add(uid)
        if kind != "DELETED" and phase == "Running":
            running.add(name)
    requests = sum(a["requests"] for a in answers.values())
    figures: Figures = {
        "wall_s": round(timed.wall, 2),
        "cpu_s": round(timed.cpu, 2),
        "peak_rss_mib": max((r.get("peak_rss_mib", 0.0) for r in reports), default=0.0),
    }
    for account, report in zip(CONTENDERS, reports, strict=True):
        figures[f"wall_s_{account[-1]}"] = report.get("wall_s")
    figures["throttled"] = sum(a["throttled"] for a in answers.values())
    figures["requests_per_sandbox"] = round(requests / (2 * n), 2)
    for key in ("created", "running", "ended", "purged"):
        figures[key] = f"{sum(int(r.get(key, 0)) for r in reports)}/{2 * n}"
    figures["errors"] = "; ".join(r["error"] for r in reports if "error" in r) or "none"
    figures["lost"] = len(expected - running)
    figures["duplicated"] = sum(len(u) - 1 for u in uids.values()) + len(set(uids) - expected)
    figures["left"] = remaining
    figures.update(interruptions)
    return figures


SCENARIO = Scenario(
    name="scale_contention",
    measure=contention,
    full_sizes=(5000,),
    quick_sizes=(100,),
    repeats=1,
    headline="throttled",
    higher_is_better=False,
    chart_figures=("throttled", "requests_per_sandbox", "wall_s"),
    clients=("sandlot",),
    quick_by_default=False,
    time_limit_s=3600,
    surroundings=scale_cluster_up,
)
