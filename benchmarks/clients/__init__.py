"""The compared clients, one module each; `load` imports one by name."""

from __future__ import annotations

import importlib

from benchmarks.clients.base import Client

NAMES = ("sandlot", "kubernetes", "kubernetes_asyncio", "kubectl")


def load(name: str) -> Client:
    """The client `name` (one of NAMES). Only its own library is imported, and before
    anything is timed, so every client pays its imports once per worker, untimed."""
    client = importlib.import_module(f"{__name__}.{name}").CLIENT
    if not isinstance(client, Client):
        raise TypeError(f"{__name__}.{name}.CLIENT is not a Client")
    return client
