"""sandlot with exec_path="kubernetes": a Kubernetes exec of its own per call, as
sandlot ran every exec before the sandbox agent (its sandboxes are created without
the agent), beside the agent path in the agent scenarios."""

from __future__ import annotations

from benchmarks.clients.sandlot import SandlotClient


class SandlotKubernetesExecClient(SandlotClient):
    name = "sandlot_kubernetes_exec"
    exec_path = "kubernetes"


CLIENT = SandlotKubernetesExecClient()
