"""The `sandlot` command line (the console script of the wheel), end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Kubectl

SANDLOT = shutil.which("sandlot", path=str(Path(sys.executable).parent)) or "sandlot"
BUSYBOX = "docker.io/library/busybox:1.36"


@pytest.fixture(scope="module")
def cli_namespace(kubeconfig: str) -> Iterator[str]:
    name = f"sandlot-cli-{uuid.uuid4().hex[:8]}"
    yield name
    Kubectl().run("delete", "namespace", name, "--wait=false", check=False)


def sandlot(namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SANDLOT, "--namespace", namespace, *args], capture_output=True, text=True, timeout=180, env=os.environ
    )


def test_main_path_from_the_terminal(cli_namespace: str) -> None:
    name = f"cli-{uuid.uuid4().hex[:6]}"
    created = sandlot(cli_namespace, "create", BUSYBOX, "--name", name, "--tag", "via=cli", "--wait")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == name

    ran = sandlot(cli_namespace, "exec", name, "--", "sh", "-c", "echo hi; echo oops >&2; exit 7")
    assert ran.returncode == 7
    assert ran.stdout == "hi\n"
    assert ran.stderr == "oops\n"

    listed = sandlot(cli_namespace, "list", "--phase", "running", "--tag", "via=cli")
    assert listed.returncode == 0, listed.stderr
    assert name in listed.stdout
    assert listed.stdout.splitlines()[0].split() == ["NAME", "PHASE", "EXIT", "REASON", "IMAGE", "CREATED"]

    got = sandlot(cli_namespace, "get", name, "--json")
    assert json.loads(got.stdout)["phase"] == "running"

    terminated = sandlot(cli_namespace, "terminate", name)
    assert terminated.returncode == 0, terminated.stderr
    assert terminated.stdout.split() == [name, "terminated"]
    assert json.loads(sandlot(cli_namespace, "get", name, "--json").stdout)["phase"] == "terminated"


def test_logs_of_a_finished_command(cli_namespace: str) -> None:
    name = f"cli-logs-{uuid.uuid4().hex[:6]}"
    created = sandlot(
        cli_namespace, "create", BUSYBOX, "--name", name, "--wait", "--", "sh", "-c", "echo one; echo two"
    )
    assert created.returncode == 0, created.stderr
    logs = sandlot(cli_namespace, "logs", name)
    assert logs.stdout == "one\ntwo\n"
    assert sandlot(cli_namespace, "logs", name, "--tail", "1").stdout == "two\n"


def test_errors_are_one_line_with_exit_status_1(cli_namespace: str) -> None:
    missing = sandlot(cli_namespace, "get", "no-such-sandbox")
    assert missing.returncode == 1
    assert missing.stderr.startswith('error: sandbox "no-such-sandbox" not found')
    invalid = sandlot(cli_namespace, "create", BUSYBOX, "--name", "Bad_Name")
    assert invalid.returncode == 1
    assert invalid.stderr.startswith('error: invalid name: "Bad_Name"')
    usage = sandlot(cli_namespace, "exec")
    assert usage.returncode == 2
