"""What importing the provider's operators and sensors in a DAG file adds over ``import airflow.sdk``.

Measured in fresh interpreters: the import of ``airflow_provider_sms.operators`` and
``airflow_provider_sms.sensors`` timed right after ``import airflow.sdk`` in the same process (the
number a DAG parse pays), median of several processes. Two whole-process timings (``import
airflow.sdk`` alone, and with the provider) are kept as a cross-check; on a shared machine their
difference is noisier than the in-process timing. Each run also lists heavy modules the import
pulled in, which must be none: hooks, ``requests``, ``tenacity`` and the store load at execution.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, Row, child_env, median, seconds

PROVIDER = "import airflow_provider_sms.operators, airflow_provider_sms.sensors"
HEAVY = ("requests", "tenacity", "airflow_provider_sms.hooks.base", "airflow_provider_sms.store", "sqlite3")
DELTA = f"""
import json, sys, time
import airflow.sdk
before = set(sys.modules)
started = time.perf_counter()
{PROVIDER}
elapsed = time.perf_counter() - started
new = sorted(set(sys.modules) - before)
print(json.dumps({{"seconds": elapsed, "heavy": [m for m in {HEAVY!r} if m in new], "new_modules": len(new)}}))
"""


def _python(code: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=child_env(), capture_output=True, text=True, check=True
    )
    return time.perf_counter() - started, done.stdout


def run_imports(workdir: Path, *, runs: int) -> list[Row]:
    _python("import airflow.sdk; " + PROVIDER)  # byte-compile once, outside the timings
    deltas: list[float] = []
    heavy: set[str] = set()
    new_modules: list[int] = []
    whole_sdk: list[float] = []
    whole_provider: list[float] = []
    for _ in range(runs):
        _, out = _python(DELTA)
        data = json.loads(out.strip().splitlines()[-1])
        deltas.append(float(data["seconds"]))
        heavy.update(data["heavy"])
        new_modules.append(int(data["new_modules"]))
        if runs >= 3:  # the cross-check needs a few processes to mean anything on a shared machine
            whole_sdk.append(_python("import airflow.sdk")[0])
            whole_provider.append(_python("import airflow.sdk; " + PROVIDER)[0])
    added = median(deltas)
    whole = f"{(median(whole_provider) - median(whole_sdk)) * 1000:+.0f} ms" if whole_sdk else "not measured"
    sdk = f"import airflow.sdk: {seconds(median(whole_sdk))}" if whole_sdk else "import airflow.sdk"
    return [
        Row(
            case="import the provider's operators and sensors in a DAG file",
            ours=f"+{seconds(added)}",
            baseline=sdk,
            ratio="—",
            target="≤ 50 ms added",
            passed=added <= 0.05 and not heavy,
            note=(
                f"in-process, median of {runs} fresh interpreters; whole-process difference of medians "
                f"{whole}; heavy modules imported: {', '.join(sorted(heavy)) or 'none'}"
            ),
            details={
                "in_process": deltas,
                "whole_process_sdk": whole_sdk,
                "whole_process_sdk_and_provider": whole_provider,
                "heavy_modules": sorted(heavy),
                "modules_added": new_modules,
            },
        )
    ]
