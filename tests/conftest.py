"""Shared fixtures. Every e2e test runs against a real cluster: the one KUBECONFIG
names (`make test` points it at the local cluster). A missing or unreachable
cluster fails the tests; it never skips them. Tests marked `unit` need no
cluster (`make test-unit` runs them alone).

sandlot's own pytest plugin gives each test module a fresh namespace
(`sandlot_namespace`, with `sandlot_client` and `sandlot_async_client` in it:
see the ini options in pyproject.toml); this file deletes those namespaces."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
KUBECTL = os.environ.get("SANDLOT_KUBECTL", str(REPO / ".cluster" / "bin" / "kubectl"))
RBAC = REPO / "deploy" / "rbac.yaml"
NODE_READER = REPO / "deploy" / "node-reader.yaml"
# The test cluster's admin credentials, as given when the session started (tests
# may point KUBECONFIG elsewhere for the code under test).
ADMIN_KUBECONFIG = os.environ.get("KUBECONFIG", "")


def unique(prefix: str) -> str:
    """`prefix` and 8 random hex digits: a name no other test run uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def check_readme_block(block: str, table: str) -> None:
    """Fails unless README.md holds `table` between its `<!-- BLOCK:begin -->`
    and `<!-- BLOCK:end -->` lines; with SANDLOT_WRITE_MATRIX=1 writes it there."""
    pattern = re.compile(rf"(<!-- {block}:begin -->\n)(.*?)(\n<!-- {block}:end -->)", re.S)
    readme = REPO / "README.md"
    text = readme.read_text()
    if os.environ.get("SANDLOT_WRITE_MATRIX") == "1":
        readme.write_text(pattern.sub(lambda m: m.group(1) + table + m.group(3), text))
        return
    found = pattern.search(text)
    assert found, f"README.md lacks the {block} block"
    assert found.group(2) == table, f"README.md's {block} differs from this run; SANDLOT_WRITE_MATRIX=1 rewrites it"


class Kubectl:
    """Runs kubectl against the test cluster, optionally in one namespace."""

    def __init__(self, namespace: str | None = None) -> None:
        self.namespace = namespace

    def run(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [KUBECTL, "--kubeconfig", ADMIN_KUBECONFIG]
        if self.namespace:
            cmd += ["--namespace", self.namespace]
        proc = subprocess.run([*cmd, *args], capture_output=True, text=True, input=input, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply(self, manifest: str) -> None:
        self.run("apply", "-f", "-", input=manifest)


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    path = os.environ.get("KUBECONFIG", "")
    if not path or not Path(path).exists():
        pytest.fail(f"no cluster: KUBECONFIG={path!r} does not name a file; run `make cluster` (make test does)")
    probe = Kubectl().run("get", "--raw", "/readyz", check=False)
    if probe.returncode != 0:
        pytest.fail(f"cluster in {path} is unreachable: {probe.stderr.strip()}")
    return path


@pytest.fixture
def kubectl_ns(kubeconfig: str) -> Iterator[Kubectl]:
    """A fresh namespace for one test, deleted afterwards."""
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    Kubectl().run("create", "namespace", namespace)
    Kubectl().run("wait", "--for=create", "serviceaccount/default", "-n", namespace, "--timeout=60s")
    yield Kubectl(namespace)
    Kubectl().run("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="session")
def sandlot_delete_namespace(kubeconfig: str) -> Callable[[str], None]:
    """Deletes the plugin's fresh namespaces whole, with the admin credentials
    (the plugin alone can only empty them). Asking for `kubeconfig` here makes
    every test in a fresh namespace fail at once when there is no cluster."""

    def delete(namespace: str) -> None:
        Kubectl().run("delete", "namespace", namespace, "--wait=false", check=False)

    return delete


def grant_node_reader(namespace: str) -> Callable[[], None]:
    """Binds deploy/node-reader.yaml's ClusterRole to the `sandlot` service
    account of `namespace`, as that file says; returns the undo."""
    binding = f"sandlot-node-reader-{namespace}"
    Kubectl().run("apply", "-f", str(NODE_READER))
    Kubectl().run(
        "create",
        "clusterrolebinding",
        binding,
        "--clusterrole=sandlot-node-reader",
        f"--serviceaccount={namespace}:sandlot",
        check=False,  # there already when an earlier run left it
    )

    def ungrant() -> None:
        Kubectl().run("delete", "clusterrolebinding", binding, "--ignore-not-found", check=False)

    return ungrant


@pytest.fixture(scope="module")
def service_account_kubeconfig(sandlot_namespace: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A kubeconfig that authenticates as the `sandlot` service account only,
    with deploy/rbac.yaml applied in the module's namespace and
    deploy/node-reader.yaml bound to it."""
    Kubectl().run(
        "create", "namespace", sandlot_namespace, check=False
    )  # there already when $SANDLOT_NAMESPACE names it
    Kubectl(sandlot_namespace).run("apply", "-f", str(RBAC))
    ungrant = grant_node_reader(sandlot_namespace)
    admin = yaml.safe_load(Kubectl().run("config", "view", "--raw", "--minify").stdout)
    cluster = admin["clusters"][0]["cluster"]
    token = Kubectl(sandlot_namespace).run("create", "token", "sandlot", "--duration", "1h").stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": cluster["server"],
                    "certificate-authority-data": cluster["certificate-authority-data"],
                },
            }
        ],
        "users": [{"name": "sandlot", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sandlot", "namespace": sandlot_namespace}}],
        "current-context": "sa",
    }
    path = tmp_path_factory.mktemp("sa") / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    yield path
    ungrant()
