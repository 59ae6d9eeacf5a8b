"""sandlot with exec_path="agent": every exec through the sandbox agent's one
multiplexed connection per client and sandbox (an exec that would take another
path is an error), beside the Kubernetes path in the agent scenarios."""

from __future__ import annotations

from benchmarks.clients.sandlot import SandlotClient


class SandlotAgentClient(SandlotClient):
    name = "sandlot_agent"
    exec_path = "agent"


CLIENT = SandlotAgentClient()
