"""Every example runs as written against the real cluster: the scripts, the
notebook (executed top to bottom), and the example test suite of the pytest
plugin. Plus the plugin's own guarantees, checked with pytester."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbclient
import nbformat
import pytest

from conftest import REPO, Kubectl

EXAMPLES = REPO / "examples"


@pytest.fixture
def example_namespace(sandlot_namespace: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The module's namespace, handed to the example scripts and the pytest runs
    they start through $SANDLOT_NAMESPACE."""
    monkeypatch.setenv("SANDLOT_NAMESPACE", sandlot_namespace)
    return sandlot_namespace


def run_example(script: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=600, env=os.environ
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_quickstart(example_namespace: str) -> None:
    out = run_example("quickstart.py")
    assert "stdout '42 3.11" in out
    assert "exit code 7" in out
    assert "phase terminated" in out


def test_agent_loop(example_namespace: str) -> None:
    out = run_example("agent_loop.py").splitlines()
    assert "sum of squares below 100: 328350" in out
    assert "reverse a word: toldnas" in out
    assert any(line.startswith("divide by zero: failed with exit code 1 (ZeroDivisionError") for line in out)
    pods = Kubectl(example_namespace).json("get", "pods", "-l", "tags.sandlot.dev/role=agent-tool")["items"]
    assert len(pods) == 3
    assert all(p["metadata"]["annotations"].get("sandlot.dev/terminated-at") for p in pods), "each task's sandbox ended"


def test_fan_out(example_namespace: str) -> None:
    out = run_example("fan_out.py")
    assert "50 jobs, at most 10 at once: exit codes {0: 40, 1: 10}" in out
    assert "job 1: exit 0, log 'job 1 squared is 1'" in out
    assert "purged 50 records" in out


def test_volumes_example(example_namespace: str) -> None:
    out = run_example("volumes.py")
    assert "reads: 'hello'" in out
    assert "deleted volume" in out


def test_streaming_example(example_namespace: str) -> None:
    out = run_example("streaming_exec.py").splitlines()
    assert [line for line in out if line.startswith("live:")] == ["live: step 1/3", "live: step 2/3", "live: step 3/3"]
    assert "sorted: ['apple', 'fig', 'pear']" in out
    assert [line for line in out if line.startswith("log:")] == ["log: tick 1", "log: tick 2", "log: tick 3"]
    assert out[-1] == "job ended succeeded"


def test_web_preview_example(example_namespace: str) -> None:
    out = run_example("web_preview.py").splitlines()
    assert any(line.startswith("preview at http://127.0.0.1:") for line in out), out
    assert 'GET /hello -> {"path": "/hello", "answer": 42}' in out
    assert any(line.startswith("in the cluster: http://") for line in out), out


def test_notebook_runs_top_to_bottom(example_namespace: str) -> None:
    notebook = nbformat.read(EXAMPLES / "notebook.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("<table>" in h and "running" in h for h in html), "the sandbox shows as a table"
    assert any("exit code 0" in h and "a warning" in h for h in html), "the exec result shows its streams"
    assert any("terminated" in h for h in html)


def test_example_suite_of_the_plugin(example_namespace: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLES / "test_with_plugin.py")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=os.environ,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout
    pods = Kubectl(example_namespace).json("get", "pods")["items"]
    assert pods and all(
        p["metadata"]["annotations"].get("sandlot.dev/terminated-at") or p["status"]["phase"] in ("Succeeded", "Failed")
        for p in pods
    ), "the fixture left nothing running"


def test_sandbox_fixture_terminates_its_sandboxes_when_the_test_raises(
    pytester: pytest.Pytester, example_namespace: str, tmp_path: Path
) -> None:
    names_file = tmp_path / "names"
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.sandlot(image="docker.io/library/busybox:1.36", tags={{"plugin": "raises"}})
        def test_fails(sandbox):
            first, second = sandbox(), sandbox(command=["sleep", "600"])
            open({str(names_file)!r}, "w").write(first.name + " " + second.name)
            raise RuntimeError("the test body fails")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    names = names_file.read_text().split()
    assert len(names) == 2
    for name in names:
        pod = Kubectl(example_namespace).json("get", "pod", name)
        assert pod["metadata"]["annotations"]["sandlot.dev/terminated-at"]
        assert pod["metadata"]["labels"]["tags.sandlot.dev/plugin"] == "raises"


def test_the_async_client_fixture_serves_tests_in_their_own_event_loops(
    pytester: pytest.Pytester, example_namespace: str
) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        """
        import asyncio

        loops = []

        async def test_first(sandlot_async_client):
            loops.append(asyncio.get_running_loop())
            sb = await sandlot_async_client.sandboxes.create("docker.io/library/busybox:1.36", tags={"plugin": "loops"})
            await sb.wait("running", timeout=120)
            assert (await sb.exec("echo one")).stdout == "one\\n"

        async def test_second(sandlot_async_client):
            assert loops and loops[0] is not asyncio.get_running_loop()
            [sb] = await sandlot_async_client.sandboxes.list(tags={"plugin": "loops"})
            assert (await sb.exec("echo two")).stdout == "two\\n"
            await sb.terminate()
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_a_fresh_namespace_is_left_empty_by_default(pytester: pytest.Pytester, kubeconfig: str, tmp_path: Path) -> None:
    record = tmp_path / "namespace"
    pytester.makepyfile(
        f"""
        def test_leaves_things_behind(sandlot_client, sandlot_namespace):
            open({str(record)!r}, "w").write(sandlot_namespace)
            volume = sandlot_client.volumes.create("left-behind", size="16Mi")
            sandlot_client.sandboxes.create("docker.io/library/busybox:1.36", volume_mounts={{"/v": volume.name}})
            sandlot_client.sandboxes.create("docker.io/library/busybox:1.36", command=["true"])
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sandlot-fresh-namespace")
    result.assert_outcomes(passed=1)
    namespace = record.read_text()
    try:
        assert namespace.startswith("sandlot-test-")
        for _ in range(60):  # deleted objects may linger a moment while their pods stop
            left = [item["metadata"]["name"] for item in Kubectl(namespace).json("get", "pods,pvc")["items"]]
            if not left:
                break
            time.sleep(0.5)
        assert left == []
    finally:
        Kubectl().run("delete", "namespace", namespace, "--wait=false", check=False)
