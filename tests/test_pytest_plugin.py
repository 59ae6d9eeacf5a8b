"""Which namespace sandlot's pytest plugin hands out, and when it cleans one
up: checked with pytester and a recording `sandlot_delete_namespace`, no
cluster needed. (The plugin's sandboxes against a cluster: test_examples.py.)"""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.unit

# Each test writes the namespace it got; the conftest records the deletions.
SUITE = """
import json, os

def test_one(sandlot_namespace):
    with open(os.environ["RECORD"], "a") as f:
        f.write(json.dumps({"module": __name__, "namespace": sandlot_namespace}) + "\\n")

def test_two(sandlot_namespace):
    with open(os.environ["RECORD"], "a") as f:
        f.write(json.dumps({"module": __name__, "namespace": sandlot_namespace}) + "\\n")
"""
CONFTEST = """
import json, os
import pytest

@pytest.fixture(scope="session")
def sandlot_delete_namespace():
    def delete(namespace):
        with open(os.environ["RECORD"], "a") as f:
            f.write(json.dumps({"deleted": namespace}) + "\\n")
    return delete
"""


def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ini: str, *args: str) -> list[dict[str, str]]:
    """Runs two test modules under `ini`; returns what they recorded, in order."""
    record = pytester.path / "record.jsonl"
    record.unlink(missing_ok=True)
    monkeypatch.setenv("RECORD", str(record))
    pytester.makeini(f"[pytest]\nasyncio_default_fixture_loop_scope = function\n{ini}\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_alpha=SUITE, test_beta_gamma=SUITE)
    pytester.runpytest("-p", "no:cacheprovider", *args).assert_outcomes(passed=4)
    return [json.loads(line) for line in record.read_text().splitlines()]


def test_the_namespace_comes_from_the_environment_else_sandlot(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SANDLOT_NAMESPACE", raising=False)
    assert {r["namespace"] for r in run(pytester, monkeypatch, "")} == {"sandlot"}
    monkeypatch.setenv("SANDLOT_NAMESPACE", "from-env")
    records = run(pytester, monkeypatch, "")
    assert {r.get("namespace") for r in records} == {"from-env"}, "a given namespace is never deleted"


def test_a_fresh_namespace_per_session_is_deleted_at_the_end(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SANDLOT_NAMESPACE", raising=False)
    records = run(pytester, monkeypatch, "sandlot_fresh_namespace = true")
    names = {r["namespace"] for r in records[:-1]}
    assert len(names) == 1
    [name] = names
    assert re.fullmatch(r"sandlot-test-[0-9a-f]{8}", name)
    assert records[-1] == {"deleted": name}


def test_a_fresh_namespace_per_module_is_deleted_after_its_module(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SANDLOT_NAMESPACE", raising=False)
    records = run(pytester, monkeypatch, "sandlot_fresh_namespace = true\nsandlot_namespace_scope = module")
    alpha, beta = records[0]["namespace"], records[3]["namespace"]
    assert records == [
        {"module": "test_alpha", "namespace": alpha},
        {"module": "test_alpha", "namespace": alpha},
        {"deleted": alpha},
        {"module": "test_beta_gamma", "namespace": beta},
        {"module": "test_beta_gamma", "namespace": beta},
        {"deleted": beta},
    ]
    assert re.fullmatch(r"sandlot-test-alpha-[0-9a-f]{8}", alpha)
    assert re.fullmatch(r"sandlot-test-beta-gamma-[0-9a-f]{8}", beta)


def test_the_environment_wins_over_the_ini_and_the_flag_over_both(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDLOT_NAMESPACE", "from-env")
    assert {r["namespace"] for r in run(pytester, monkeypatch, "sandlot_fresh_namespace = true")} == {"from-env"}
    records = run(pytester, monkeypatch, "", "--sandlot-fresh-namespace")
    assert records[-1]["deleted"].startswith("sandlot-test-")
    assert {r.get("namespace") for r in records[:-1]} == {records[-1]["deleted"]}


def test_a_bad_scope_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nsandlot_fresh_namespace = true\nsandlot_namespace_scope = function\n")
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*sandlot_namespace_scope = 'function': use 'session' or 'module'*"])
