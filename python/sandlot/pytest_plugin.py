"""sandlot's pytest plugin, registered through the package's `pytest11` entry
point: installing sandlot is enough.

Fixtures:

- ``sandlot_namespace``: the name of the namespace the tests use. By default
  the one a client without a namespace argument uses (``$SANDLOT_NAMESPACE``,
  else inside a pod its own namespace, else "sandlot"), for the whole session. With a fresh
  namespace asked for (``--sandlot-fresh-namespace`` on the command line, or
  ``sandlot_fresh_namespace = true`` in the ini file), a new uniquely named one
  per session, or per test module with ``sandlot_namespace_scope = module``,
  handed to ``sandlot_delete_namespace`` when its scope ends. The flag wins over
  ``$SANDLOT_NAMESPACE``, which wins over the ini setting.
- ``sandlot_client``: a :class:`sandlot.Client` in ``sandlot_namespace``, shared
  by the namespace's scope.
- ``sandlot_async_client``: the :class:`sandlot.AsyncClient` equivalent. It
  connects on its first call, and its calls work from any event loop, so it
  suits any async test runner and any event loop scope.
- ``sandbox``: a factory, ``sandbox(image=None, **create_options)``, that creates
  sandboxes with ``sandlot_client`` and terminates every one it made when the
  test ends, also when the test fails.
- ``sandlot_delete_namespace``: called with a fresh namespace's name when its
  scope ends. sandlot's own permissions stop at the objects inside a namespace,
  so the default empties it: it terminates and purges every sandbox and deletes
  every volume, and leaves the empty namespace. Override this fixture (session
  scope, returning a ``Callable[[str], None]``) in ``conftest.py`` to delete
  the namespace itself with credentials that may.

Clients create their namespace when they connect.

Marker: ``@pytest.mark.sandlot(image=..., tags={...})`` sets the factory's
defaults for a test, class or module (``SANDLOT_TEST_IMAGE`` sets the image for
all).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal, Protocol

import pytest

from sandlot import AsyncClient, Client, Sandbox

DEFAULT_IMAGE = "docker.io/library/python:3.11-slim"

Scope = Literal["session", "module"]
FRESH_SCOPE = pytest.StashKey["Scope | None"]()


class SandboxFactory(Protocol):
    """Creates a sandbox that the ``sandbox`` fixture terminates at teardown."""

    def __call__(self, image: str | None = None, **options: Any) -> Sandbox: ...


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sandlot")
    group.addoption(
        "--sandlot-fresh-namespace",
        action="store_true",
        default=None,
        help="run the tests in a fresh namespace, cleaned up afterwards, even if $SANDLOT_NAMESPACE names one",
    )
    parser.addini(
        "sandlot_fresh_namespace",
        "run the tests in a fresh namespace, cleaned up afterwards, unless $SANDLOT_NAMESPACE names one",
        type="bool",
        default=False,
    )
    parser.addini(
        "sandlot_namespace_scope",
        "how long a fresh namespace lives: 'session' (default) or 'module'",
        default="session",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sandlot(image=None, tags=None): defaults for sandboxes made by the `sandbox` fixture"
    )
    config.stash[FRESH_SCOPE] = read_fresh_scope(config)


def read_fresh_scope(config: pytest.Config) -> Scope | None:
    """How long fresh namespaces live, or None when the run uses a given namespace.
    Read once at startup: a test that sets $SANDLOT_NAMESPACE changes nothing here."""
    fresh = config.getoption("sandlot_fresh_namespace", None) or (
        not os.environ.get("SANDLOT_NAMESPACE") and config.getini("sandlot_fresh_namespace")
    )
    if not fresh:
        return None
    scope = str(config.getini("sandlot_namespace_scope")).strip()
    if scope == "session":
        return "session"
    if scope == "module":
        return "module"
    raise pytest.UsageError(f"sandlot_namespace_scope = {scope!r}: use 'session' or 'module'")


def namespace_scope(fixture_name: str, config: pytest.Config) -> Scope:
    """Fixtures tied to the namespace live as long as it does."""
    return config.stash[FRESH_SCOPE] or "session"


def fresh_name(request: pytest.FixtureRequest) -> str:
    """`sandlot-test-`, the module's name when per module, and 8 random hex digits."""
    label = ""
    if request.scope == "module":
        module = request.module.__name__.rpartition(".")[2].removeprefix("test_")
        label = re.sub(r"[^a-z0-9]+", "-", module.lower()).strip("-")[:30].rstrip("-")
    return "-".join(part for part in ("sandlot-test", label, uuid.uuid4().hex[:8]) if part)


@pytest.fixture(scope="session")
def sandlot_delete_namespace() -> Callable[[str], None]:
    """Empties a fresh namespace at the end of its scope: override it to delete the namespace."""

    def empty(namespace: str) -> None:
        with Client(namespace) as client:
            client.sandboxes.terminate_many(all=True)
            for volume in client.volumes.list():
                volume.delete(force=True)
            client.sandboxes.purge(all=True)

    return empty


@pytest.fixture(scope=namespace_scope)
def sandlot_namespace(request: pytest.FixtureRequest, sandlot_delete_namespace: Callable[[str], None]) -> Iterator[str]:
    """The namespace the tests use: given, or fresh and cleaned up after its scope."""
    if request.config.stash[FRESH_SCOPE] is None:
        yield Client().namespace  # the clients' own rule; constructing one connects nothing
        return
    namespace = fresh_name(request)
    try:
        yield namespace
    finally:
        sandlot_delete_namespace(namespace)


@pytest.fixture(scope=namespace_scope)
def sandlot_client(sandlot_namespace: str) -> Iterator[Client]:
    """A blocking sandlot client in ``sandlot_namespace``."""
    with Client(sandlot_namespace) as client:
        yield client


@pytest.fixture
def sandbox(request: pytest.FixtureRequest, sandlot_client: Client) -> Iterator[SandboxFactory]:
    """A factory of sandboxes that are all terminated when the test ends."""
    marker = request.node.get_closest_marker("sandlot")
    defaults: dict[str, Any] = dict(marker.kwargs) if marker else {}
    default_image = defaults.pop("image", None) or os.environ.get("SANDLOT_TEST_IMAGE") or DEFAULT_IMAGE
    default_tags: dict[str, str] = defaults.pop("tags", None) or {}
    made: list[Sandbox] = []

    def create(image: str | None = None, **options: Any) -> Sandbox:
        tags = {**default_tags, **(options.pop("tags", None) or {})}
        sb = sandlot_client.sandboxes.create(image or default_image, tags=tags or None, **{**defaults, **options})
        made.append(sb)
        return sb

    try:
        yield create
    finally:
        if made:
            sandlot_client.sandboxes.terminate_many(made)


@pytest.fixture(scope=namespace_scope)
def sandlot_async_client(sandlot_namespace: str) -> AsyncClient:
    """An async sandlot client in ``sandlot_namespace``. It connects on its first
    call, and its calls work from any event loop: no loop scope to match."""
    return AsyncClient(sandlot_namespace)
