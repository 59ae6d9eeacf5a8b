"""The wheel users install (`make wheel`, which `make test` runs first): an abi3
manylinux wheel that installs into a fresh virtualenv with nothing else, no
index and no Rust toolchain in reach, and runs the quickstart and the CLI."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO

DIST = REPO / "dist"
# Only the system's and the venv's programs: no cargo or rustc to fall back on.
SYSTEM_PATH = "/usr/bin:/bin"


@pytest.fixture(scope="module")
def wheel() -> Path:
    wheels = sorted(DIST.glob("sandlot-*.whl"))
    if len(wheels) != 1:
        pytest.fail(f"expected one sandlot wheel in {DIST}, found {[w.name for w in wheels]}: run `make wheel`")
    return wheels[0]


@dataclass
class Venv:
    env: dict[str, str]  # the environment to run the venv's programs in
    added: set[str]  # the distributions that installing the wheel added


def distributions(env: dict[str, str]) -> set[str]:
    listed = subprocess.run(
        ["python", "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return {line.split("==")[0] for line in listed.stdout.split()}


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh virtualenv with the wheel installed, and nothing from an index."""
    venv = tmp_path_factory.mktemp("wheel") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    # PIP_CONFIG_FILE: no pip configuration of this machine (find-links, say) takes part.
    env = {
        "PATH": f"{bin_dir}:{SYSTEM_PATH}",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PIP_CONFIG_FILE": os.devnull,
    }
    for tool in ["cargo", "rustc", "maturin"]:
        assert shutil.which(tool, path=env["PATH"]) is None, f"{tool} is reachable from the test's PATH"
    before = distributions(env)
    pip = subprocess.run(
        [
            str(bin_dir / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--disable-pip-version-check",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return Venv(env, distributions(env) - before)


def test_the_wheel_is_abi3_and_manylinux(wheel: Path) -> None:
    assert re.fullmatch(r"sandlot-[0-9.]+-cp311-abi3-manylinux_2_\d+_x86_64(\.manylinux\w+)*\.whl", wheel.name), (
        wheel.name
    )


def test_the_wheel_installs_alone_and_is_what_python_imports(venv: Venv, tmp_path: Path) -> None:
    assert venv.added == {"sandlot"}
    found = subprocess.run(
        ["python", "-c", "import sandlot, sys; print(sandlot.__file__); print(sys.prefix)"],
        capture_output=True,
        text=True,
        env=venv.env,
        cwd=tmp_path,
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    module, prefix = found.stdout.split()
    assert module.startswith(prefix + "/lib/"), "sandlot comes from the fresh venv, not the source tree"


def test_the_cli_runs_from_the_wheel(venv: Venv, tmp_path: Path) -> None:
    helped = subprocess.run(
        ["sandlot", "--help"], capture_output=True, text=True, env=venv.env, cwd=tmp_path, timeout=60
    )
    assert helped.returncode == 0, helped.stderr
    for command in ["create", "list", "exec", "terminate", "volume"]:
        assert command in helped.stdout
    assert "124 timeout" in helped.stdout


def test_the_quickstart_runs_from_the_wheel(
    venv: Venv, kubeconfig: str, sandlot_namespace: str, tmp_path: Path
) -> None:
    env = {**venv.env, "KUBECONFIG": kubeconfig, "SANDLOT_NAMESPACE": sandlot_namespace}
    proc = subprocess.run(
        ["python", str(REPO / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"namespace {sandlot_namespace!r}" in proc.stdout
    assert "stdout '42 3.11" in proc.stdout
    assert "exit code 7" in proc.stdout
    assert "phase terminated" in proc.stdout
