"""sandlot's pytest plugin, registered through the package's `pytest11` entry
point: installing sandlot is enough.

Fixtures:

- ``sandlot_client``: a session-wide :class:`sandlot.Client` (namespace from
  ``$SANDLOT_NAMESPACE``, else "sandlot").
- ``sandlot_async_client``: the :class:`sandlot.AsyncClient` equivalent, when
  pytest-asyncio is installed.
- ``sandbox``: a factory, ``sandbox(image=None, **create_options)``, that creates
  sandboxes and terminates every one it made when the test ends, also when the
  test fails.

Marker: ``@pytest.mark.sandlot(image=..., tags={...})`` sets the factory's
defaults for a test, class or module (``SANDLOT_TEST_IMAGE`` sets the image for
all).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Protocol

import pytest

from sandlot import Client, Sandbox

DEFAULT_IMAGE = "docker.io/library/python:3.11-slim"


class SandboxFactory(Protocol):
    """Creates a sandbox that the ``sandbox`` fixture terminates at teardown."""

    def __call__(self, image: str | None = None, **options: Any) -> Sandbox: ...


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sandlot(image=None, tags=None): defaults for sandboxes made by the `sandbox` fixture"
    )


@pytest.fixture(scope="session")
def sandlot_client() -> Iterator[Client]:
    """A blocking sandlot client shared by the test session."""
    with Client() as client:
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


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the async fixture needs pytest-asyncio
    pass
else:
    from collections.abc import AsyncIterator

    from sandlot._native import AsyncClient

    @pytest_asyncio.fixture
    async def sandlot_async_client() -> AsyncIterator[AsyncClient]:
        """An async sandlot client for one test."""
        async with AsyncClient() as client:
            yield client
