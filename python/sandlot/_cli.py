"""Entry point of the ``sandlot`` console script: the Rust CLI, in process."""

from __future__ import annotations

import sys

from sandlot._native import run_cli


def main() -> None:
    sys.exit(run_cli(["sandlot", *sys.argv[1:]]))
