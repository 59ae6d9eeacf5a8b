"""sandlot with network="unrestricted": no NetworkPolicy and no gate, beside the
default client in the fan-out, so the table shows what the default network adds."""

from __future__ import annotations

from benchmarks.clients.sandlot import SandlotClient


class SandlotUnrestrictedClient(SandlotClient):
    name = "sandlot_unrestricted"
    network = "unrestricted"


CLIENT = SandlotUnrestrictedClient()
