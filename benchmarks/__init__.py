"""Benchmarks: the provider against a hand-written ``requests``/``sqlite3`` baseline, in the same run.

Run ``python -m benchmarks.run`` (``--quick`` for a smoke run); see ``benchmarks/run.py``.
"""
