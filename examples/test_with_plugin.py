"""An example test suite using sandlot's pytest plugin (installed with sandlot).

Run it with `pytest examples/test_with_plugin.py` and KUBECONFIG set. Each test
gets sandboxes from the `sandbox` fixture, which terminates them afterwards.
"""

from __future__ import annotations

import pytest

import sandlot
from sandlot.pytest_plugin import SandboxFactory


@pytest.mark.sandlot(image="docker.io/library/busybox:1.36", tags={"suite": "example"})
def test_a_command_runs_in_a_fresh_sandbox(sandbox: SandboxFactory) -> None:
    sb = sandbox()
    sb.wait("running", timeout=120)
    assert sb.exec("echo $((6 * 7))").stdout == "42\n"
    assert sb.status.tags == {"suite": "example"}


def test_jobs_report_their_exit_codes(sandbox: SandboxFactory) -> None:
    job = sandbox(command=["python3", "-c", "raise SystemExit(3)"])
    status = job.wait(["succeeded", "failed"], timeout=120)
    assert (status.phase, status.exit_code) == (sandlot.Phase.FAILED, 3)


def test_the_client_fixture(sandlot_client: sandlot.Client) -> None:
    assert sandlot_client.sandboxes.list(tags={"suite": "never-used"}) == []
