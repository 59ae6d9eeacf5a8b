"""sandlot with user_namespace=False: its default network, but the node's user
ids (no `hostUsers: false`), beside the default client in the fan-out, so the
table shows what a user namespace adds per sandbox."""

from __future__ import annotations

from benchmarks.clients.sandlot import SandlotClient


class SandlotHostUsersClient(SandlotClient):
    name = "sandlot_host_users"
    user_namespace = False


CLIENT = SandlotHostUsersClient()
