"""Lists that show as tables in notebooks."""

from __future__ import annotations

from typing import TypeVar

from sandlot._native import AsyncSandbox, Sandbox, _sandboxes_html

_S = TypeVar("_S", AsyncSandbox, Sandbox)


class SandboxList(list[_S]):
    """The sandboxes a ``list()`` found: a plain list that shows as a table in notebooks."""

    def _repr_html_(self) -> str:
        return _sandboxes_html([sandbox.status for sandbox in self])
