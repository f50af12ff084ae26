"""Benchmark cases: each module has child functions (run in a fresh process) and a ``run_*`` that makes rows."""
