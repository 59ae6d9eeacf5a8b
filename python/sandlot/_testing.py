"""Hooks into the native runtime for sandlot's own tests and benchmarks; not
part of the public API."""

from sandlot._native import _runtime_task_count as runtime_task_count
from sandlot._native import _set_file_idle as set_file_idle
from sandlot._native import _set_follow_idle as set_follow_idle
from sandlot._native import _set_launch_retry_window as set_launch_retry_window
from sandlot._native import _set_stale_program_age as set_stale_program_age
from sandlot._native import _stop_pod_watch as stop_pod_watch
from sandlot._native import _yield_once as yield_once

__all__ = [
    "runtime_task_count",
    "set_file_idle",
    "set_follow_idle",
    "set_launch_retry_window",
    "set_stale_program_age",
    "stop_pod_watch",
    "yield_once",
]
