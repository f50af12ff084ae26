"""What every benchmark case shares: result rows, statistics, the simulator process and child processes.

Each measurement runs in a fresh child process (``python -m benchmarks.child``), so that one case's
imports, caches and memory high-water mark do not leak into another's, and the simulator runs in a
process of its own (``benchmarks.simproc``), so that client and server do not share one GIL.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
VENDORS = ("paasw_v2", "paasw_v1", "intl", "account_md5", "cloud_mas")


@dataclass
class Row:
    """One line of the table: our measurement, the baseline's, their ratio, and whether the target holds.

    ``ratio`` is oriented so that the target reads as written in the issue (``≥ 0.9×`` for throughput,
    ``≤ 1.3×`` for wall time against the ideal); ``passed`` is None for rows that only inform.
    """

    case: str
    ours: str
    baseline: str
    ratio: str
    target: str
    passed: bool | None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "info" if self.passed is None else ("pass" if self.passed else "FAIL")


def ratio_target(value: float, *, at_least: float | None = None, at_most: float | None = None) -> dict[str, Any]:
    """A row's ``ratio``, ``target`` and ``passed`` for a bound on a ratio, from one number each,
    so that the target as printed and the check made cannot drift apart."""
    if (at_least is None) == (at_most is None):
        raise ValueError("give exactly one of at_least and at_most")
    if at_least is not None:
        return {"ratio": f"{value:.2f}×", "target": f"≥ {at_least:g}×", "passed": value >= at_least}
    assert at_most is not None
    return {"ratio": f"{value:.2f}×", "target": f"≤ {at_most:g}×", "passed": value <= at_most}


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def paired_ratio(numerator: Sequence[Mapping[str, Any]], denominator: Sequence[Mapping[str, Any]]) -> float:
    """Median over rounds of ``numerator wall / denominator wall``, each pair run back to back.

    Two runs of one round saw the same load on a shared machine; the median of their ratios is steadier
    than the ratio of two medians taken minutes apart.
    """
    return median([float(n["wall"]) / float(d["wall"]) for n, d in zip(numerator, denominator, strict=True)])


def seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def megabytes(value: float) -> str:
    return f"{value / 2**20:.1f} MB"


def rate(count: float, elapsed: float) -> str:
    per_second = count / elapsed if elapsed > 0 else float("inf")
    return f"{per_second:,.0f}/s"


def machine() -> dict[str, Any]:
    """What the numbers were measured on: they mean little without it."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": model or "unknown",
        "memory": f"{memory / 2**30:.1f} GiB" if memory else "unknown",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    try:
        from importlib.metadata import version

        info["airflow"] = version("apache-airflow")
        info["requests"] = version("requests")
    except Exception:  # pragma: no cover - informative only
        pass
    import sqlite3

    info["sqlite"] = sqlite3.sqlite_version
    return info


# ------------------------------------------------------------------------------------------------ simulator


@dataclass
class Simulator:
    """A running ``benchmarks.simproc``: its connections, admin calls and CPU counter."""

    info: dict[str, Any]
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return int(self.info["pid"])

    @property
    def http_url(self) -> str:
        return str(self.info["http_url"])

    def connection(self, vendor: str) -> str:
        return str(self.info["connections"][vendor])

    def reset(self) -> None:
        control(self.info, "/reset")


def control(info: Mapping[str, Any], path: str, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A POST to the simulator process's control port (``/reset``, ``/fill``)."""
    response = requests.post(f"{info['control_url']}{path}", json=dict(payload or {}), timeout=900)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


@contextmanager
def simulator(workdir: Path) -> Iterator[Simulator]:
    """Start the simulator in its own process; stop it on exit."""
    ready = workdir / "simulator.json"
    log = (workdir / "simulator.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.simproc", "--ready-file", str(ready)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=child_env(),
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            if process.poll() is not None:
                raise RuntimeError(f"the simulator exited with {process.returncode}; see {workdir / 'simulator.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the simulator did not start in 120 s; see {workdir / 'simulator.log'}")
            time.sleep(0.1)
        yield Simulator(json.loads(ready.read_text()), process)
    finally:
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# ------------------------------------------------------------------------------------------------ children


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: this one, minus any Airflow connections of the caller's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env.update(extra or {})
    return env


class ChildError(RuntimeError):
    pass


def run_child(target: str, params: Mapping[str, Any], workdir: Path, *, timeout: float = 900) -> dict[str, Any]:
    """Run ``module:function(params)`` in a fresh interpreter and return the dict it returned.

    The child's output (task logs included) goes to a log file in ``workdir``, as a task's would.
    """
    name = target.rsplit(":", 1)[1]
    handle, params_path = tempfile.mkstemp(prefix=f"{name}-", suffix=".json", dir=workdir)
    os.close(handle)
    Path(params_path).write_text(json.dumps(params))
    result_path = params_path.replace(".json", ".result.json")
    log_path = params_path.replace(".json", ".log")
    with open(log_path, "wb") as log:
        completed = subprocess.run(
            [sys.executable, "-m", "benchmarks.child", target, params_path, result_path],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env({"AIRFLOW_HOME": str(Path(workdir) / f"home-{name}")}),
            timeout=timeout,
            check=False,
        )
    if completed.returncode != 0 or not os.path.exists(result_path):
        tail = Path(log_path).read_text(errors="replace")[-3000:]
        raise ChildError(f"{target} failed with exit code {completed.returncode}; log {log_path}:\n{tail}")
    result: dict[str, Any] = json.loads(Path(result_path).read_text())
    return result


def row_dict(row: Row) -> dict[str, Any]:
    data = asdict(row)
    data["verdict"] = row.verdict
    return data
