"""Loads the extension module with its allocator's options.

mimalloc, the extension module's allocator, reads its options from the
environment once, as the module loads. Unless the user set it, freed pages go
back to the system after 10 ms instead of mimalloc's default of a second, which
lowers the peak memory of bulk work (benchmarks/results.md, scale). The variable
is set for the load only: child processes do not inherit it.
"""

import os

_PURGE_DELAY = "MIMALLOC_PURGE_DELAY"

_ours = _PURGE_DELAY not in os.environ
if _ours:
    os.environ[_PURGE_DELAY] = "10"
try:
    import sandlot._native  # noqa: F401
finally:
    if _ours:
        del os.environ[_PURGE_DELAY]
