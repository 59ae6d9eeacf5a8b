"""`sandlot pool ...` and `sandlot create --pool`, run as the console script
against the local cluster: a pool filled with --wait, listed and shown, a
sandbox taken from it (and the replacement the claim starts before the CLI
exits), resize, delete, and input refused before any request."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from conftest import Kubectl, unique
from test_cli import SANDLOT, sandlot

BUSYBOX = "busybox:1.36"


def as_json(namespace: str, *args: str) -> Any:
    done = sandlot(namespace, *args, "-o", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def warm_pods(namespace: str, pool: str) -> list[str]:
    """Names of the pool's warm pods that are not being deleted."""
    pods = Kubectl(namespace).json("get", "pods", "-l", f"sandlot.dev/pool={pool},sandlot.dev/warm")["items"]
    return [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")]


def test_a_pool_from_create_to_delete(sandlot_namespace: str) -> None:
    pool = unique("warm")
    created = sandlot(
        sandlot_namespace, "pool", "create", pool, BUSYBOX, "--size", "1", "--env", "A=1", "--wait", "120"
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout == f"{pool}\n"

    listed = sandlot(sandlot_namespace, "pool", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == "NAME IMAGE SIZE READY STARTING STALE NETWORK AGE".split()
    assert lines[1].split()[:7] == [pool, BUSYBOX, "1", "1", "0", "0", "internet"]
    assert sandlot(sandlot_namespace, "pool", "list", "-o", "name").stdout.split() == [pool]
    got = as_json(sandlot_namespace, "pool", "get", pool)
    assert (got["name"], got["image"], got["size"], got["ready"], got["stale"]) == (pool, BUSYBOX, 1, 1, 0)
    assert json.loads(got["template"])["env"] == {"A": "1"}
    shown = sandlot(sandlot_namespace, "pool", "get", pool).stdout.splitlines()
    assert "ready      1" in shown and f"image      {BUSYBOX}" in shown

    # No image: the pool's. The warm sandbox becomes the caller's at once.
    taken = sandlot(sandlot_namespace, "create", "--pool", pool, "--tag", "via=pool")
    assert taken.returncode == 0, taken.stderr
    name = taken.stdout.strip()
    assert name.startswith(f"{pool}-") and taken.stderr == ""
    # The CLI waited for the replacement's create before it exited.
    after = as_json(sandlot_namespace, "pool", "get", pool)
    assert after["ready"] + after["starting"] == 1, after
    status = as_json(sandlot_namespace, "get", name)
    assert (status["pool"], status["warm"], status["pool_fallback"]) == (pool, False, None)
    assert (status["phase"], status["image"], status["tags"]) == ("running", BUSYBOX, {"via": "pool"})
    assert "pool       " + pool in sandlot(sandlot_namespace, "get", name).stdout.splitlines()
    ran = sandlot(sandlot_namespace, "exec", name, "--", "sh", "-c", "echo $A")
    assert (ran.returncode, ran.stdout) == (0, "1\n")
    assert [s["pool"] for s in as_json(sandlot_namespace, "list", "--tag", "via=pool")] == [pool]

    # A create the pool cannot serve warm is made cold from its template, and says why.
    cold = unique("cold")
    made = sandlot(sandlot_namespace, "create", "--pool", pool, "--name", cold)
    assert made.returncode == 0, made.stderr
    assert made.stdout == f"{cold}\n" and "a name was given" in made.stderr
    cold_status = as_json(sandlot_namespace, "get", cold)
    assert cold_status["pool"] == pool and "a name was given" in cold_status["pool_fallback"]
    assert cold_status["image"] == BUSYBOX
    assert any(
        line.startswith("fallback   a name") for line in sandlot(sandlot_namespace, "get", cold).stdout.splitlines()
    )

    resized = sandlot(sandlot_namespace, "pool", "resize", pool, "0", "-o", "json")
    assert resized.returncode == 0, resized.stderr
    assert [(p["name"], p["size"]) for p in json.loads(resized.stdout)] == [(pool, 0)]
    deadline = time.monotonic() + 30
    while warm_pods(sandlot_namespace, pool) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert warm_pods(sandlot_namespace, pool) == []

    deleted = sandlot(sandlot_namespace, "pool", "delete", pool)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout == f"{pool} deleted (0 warm sandboxes ended)\n"
    assert as_json(sandlot_namespace, "pool", "list") == []
    gone = sandlot(sandlot_namespace, "pool", "get", pool)
    assert gone.returncode == 4
    assert gone.stderr.splitlines()[0] == f'error: pool "{pool}" not found in namespace "{sandlot_namespace}"'
    # Sandboxes taken from a pool outlive it.
    assert as_json(sandlot_namespace, "get", name)["phase"] == "running"
    assert sandlot(sandlot_namespace, "terminate", name, cold).returncode == 0


def test_delete_counts_the_warm_sandboxes_it_ends(sandlot_namespace: str) -> None:
    pool = unique("ended")
    created = sandlot(sandlot_namespace, "pool", "create", pool, BUSYBOX, "--wait", "120")
    assert created.returncode == 0, created.stderr
    deleted = sandlot(sandlot_namespace, "pool", "delete", pool, "-o", "json")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout) == {"name": pool, "warm_sandboxes_ended": 1}


def test_refused_input_sends_nothing_and_names_the_field(sandlot_namespace: str) -> None:
    bad = sandlot(sandlot_namespace, "pool", "create", "Bad_Name", BUSYBOX)
    assert bad.returncode == 2
    assert bad.stderr.startswith('error: invalid name: "Bad_Name"')
    for args, start in [
        (["--idle-seconds", "5"], "error: invalid --idle-seconds:"),
        (["--max-ttl-seconds", "0"], "error: invalid --max-ttl-seconds:"),
        (["--network", "bogus"], "error: invalid --network:"),
        (["--env", "no-equals"], "error: invalid --env:"),
        (["--cpu", "lots"], "error: invalid resources.cpu:"),
        (["--size", "501"], "error: invalid value '501' for '--size <N>'"),
        (["--wait=-1"], "error: invalid value '-1' for '--wait <SECONDS>'"),
    ]:
        refused = sandlot(sandlot_namespace, "pool", "create", "fine", BUSYBOX, *args)
        assert (refused.returncode, refused.stderr.startswith(start)) == (2, True), (args, refused.stderr)
    assert [p["name"] for p in as_json(sandlot_namespace, "pool", "list") if p["name"] in ("fine", "bad-name")] == []

    no_image = sandlot(sandlot_namespace, "create")
    assert no_image.returncode == 2
    assert no_image.stderr.startswith("error: invalid IMAGE:") and "--pool" in no_image.stderr
    probe = unique("probe")
    bad_pool = sandlot(sandlot_namespace, "create", "--pool", "Bad_Pool", "--tag", f"probe={probe}")
    assert bad_pool.returncode == 2 and bad_pool.stderr.startswith("error: invalid --pool:")
    no_pool = sandlot(sandlot_namespace, "create", "--pool", "no-such-pool", "--tag", f"probe={probe}")
    assert no_pool.returncode == 4
    assert no_pool.stderr.startswith('error: pool "no-such-pool" not found')
    assert as_json(sandlot_namespace, "list", "--all-phases", "--tag", f"probe={probe}") == []

    for command in (["resize", "no-such-pool", "1"], ["fill", "no-such-pool"], ["delete", "no-such-pool"]):
        assert sandlot(sandlot_namespace, "pool", *command).returncode == 4, command

    pool = unique("twice")
    assert sandlot(sandlot_namespace, "pool", "create", pool, BUSYBOX, "--size", "0").returncode == 0
    again = sandlot(sandlot_namespace, "pool", "create", pool, BUSYBOX)
    assert again.returncode == 1
    assert "already taken" in again.stderr and "sandlot pool update" in again.stderr
    updated = sandlot(sandlot_namespace, "pool", "update", pool, BUSYBOX, "--memory", "64Mi", "-o", "json")
    assert updated.returncode == 0, updated.stderr
    after = json.loads(updated.stdout)
    assert after["size"] == 0, "update without --size keeps the size"
    assert json.loads(after["template"])["memory"] == "64Mi"
    timed_out = sandlot(sandlot_namespace, "pool", "resize", pool, "1", "--wait", "0")
    assert timed_out.returncode == 124, timed_out.stderr
    assert sandlot(sandlot_namespace, "pool", "delete", pool).returncode == 0


@pytest.mark.unit
def test_pool_help_has_examples() -> None:
    for command in (["pool"], ["pool", "create"], ["pool", "update"], ["pool", "resize"], ["pool", "fill"]):
        shown = subprocess.run([SANDLOT, *command, "--help"], capture_output=True, text=True)
        assert shown.returncode == 0 and "Example" in shown.stdout, command
    assert "--pool" in subprocess.run([SANDLOT, "create", "--help"], capture_output=True, text=True).stdout
