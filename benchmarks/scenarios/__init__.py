"""The scenarios, one module each: in the order results.md shows them, and in the order they run."""

from __future__ import annotations

from benchmarks.scenarios import (
    agent_at_rest,
    agent_concurrent_execs,
    agent_exec_latency,
    agent_metrics,
    agent_throughput,
    bridge,
    contention,
    exec_latency,
    exec_throughput,
    fanout,
    file_transfer,
    log_follow,
    pools,
    ports,
    scale,
    user_namespace,
    waiting,
)
from benchmarks.scenarios.base import Scenario

ALL: tuple[Scenario, ...] = (
    fanout.SCENARIO,
    waiting.SCENARIO,
    exec_latency.SCENARIO,
    exec_throughput.SCENARIO,
    log_follow.SCENARIO,
    user_namespace.SCENARIO,
    bridge.SCENARIO,
    agent_exec_latency.SCENARIO,
    agent_concurrent_execs.SCENARIO,
    agent_throughput.SCENARIO,
    agent_at_rest.SCENARIO,
    agent_metrics.SCENARIO,
    file_transfer.SCENARIO,
    file_transfer.TREE_SCENARIO,
    file_transfer.MEMORY_SCENARIO,
    pools.SCENARIO,
    pools.CONCURRENT_SCENARIO,
    ports.SCENARIO,
    scale.SCENARIO,
    contention.SCENARIO,
)
# The one that leaves most pods to stop comes last, so nothing waits for them.
RUN_ORDER: tuple[Scenario, ...] = (
    bridge.SCENARIO,
    exec_latency.SCENARIO,
    exec_throughput.SCENARIO,
    agent_exec_latency.SCENARIO,
    agent_concurrent_execs.SCENARIO,
    agent_throughput.SCENARIO,
    log_follow.SCENARIO,
    user_namespace.SCENARIO,
    agent_at_rest.SCENARIO,
    agent_metrics.SCENARIO,
    file_transfer.SCENARIO,
    file_transfer.TREE_SCENARIO,
    file_transfer.MEMORY_SCENARIO,
    pools.SCENARIO,
    pools.CONCURRENT_SCENARIO,
    ports.SCENARIO,
    fanout.SCENARIO,
    waiting.SCENARIO,
    scale.SCENARIO,
    contention.SCENARIO,
)
BY_NAME = {scenario.name: scenario for scenario in ALL}
