"""sandlot against the other ways to drive Kubernetes from Python; `python benchmarks/run.py`
runs it. `clients/` holds one module per client behind one interface, `scenarios/` one
module per workload, `runner.py` the worker processes, `report.py` results.md and charts."""
