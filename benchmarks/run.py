"""sandlot against what users would otherwise pick, side by side in one run on
the local cluster: the official `kubernetes` client (threads and `stream()`),
`kubernetes_asyncio`, and `kubectl` as a subprocess.

    python benchmarks/run.py            # every scenario, every client -> results.md, charts/
    python benchmarks/run.py --quick    # smallest sizes, one repetition (the smoke test)
    python benchmarks/run.py --only agent_exec_latency --out /tmp/bench   # one scenario

Each (scenario, client, repetition) runs in a fresh worker process, so client
CPU time and peak RSS are the worker's own (kubectl's processes included).
API requests are counted at the API server from its audit log (the local
cluster audits the `sandlot-bench` namespace), not by the clients.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run as a script, this folder is on the path; the repository must be, for the
# `benchmarks` package (also in the worker processes, which run this file).
sys.path[0] = str(HERE.parent)

from benchmarks import report, runner, scenarios  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smallest sizes, one repetition")
    parser.add_argument("--out", type=Path, default=HERE, help="where results.md and charts/ go")
    parser.add_argument("--only", action="append", choices=list(scenarios.BY_NAME), help="run only these scenarios")
    parser.add_argument("--worker", nargs=3, metavar=("SCENARIO", "CLIENT", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        scenario, client, size = args.worker
        print(json.dumps(runner.work(scenarios.BY_NAME[scenario], client, int(size))))
        return
    started = time.monotonic()
    table: report.Table = {
        s: {} for s in scenarios.ALL if (s.name in args.only if args.only else s.quick_by_default or not args.quick)
    }
    for scenario in scenarios.RUN_ORDER:
        if scenario in table:
            table[scenario] = runner.run_scenario(scenario, args.quick, started)
    minutes = (time.monotonic() - started) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_results(table, args.out, args.quick, minutes)
    print(f"wrote {args.out / 'results.md'} in {minutes:.1f} minutes")


if __name__ == "__main__":
    main()
