"""Helpers for code running inside a benchmark child process."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests


def use_simulator(sim: Mapping[str, Any]) -> None:
    """Point ``AIRFLOW_CONN_SMS_<VENDOR>`` at the simulator process, as a deployment's connections would."""
    for vendor, connection in sim["connections"].items():
        os.environ[f"AIRFLOW_CONN_SMS_{vendor.upper()}"] = connection


def reset_simulator(sim: Mapping[str, Any]) -> None:
    """Fresh simulator state (and balances) and a fresh process token cache, before every timed run."""
    from airflow_provider_sms.hooks.base import PROCESS_SLOTS, TOKEN_CACHE

    requests.post(f"{sim['control_url']}/reset", json={}, timeout=120).raise_for_status()
    TOKEN_CACHE.clear()
    PROCESS_SLOTS.clear()


def sim_cpu(sim: Mapping[str, Any]) -> float:
    return float(requests.get(f"{sim['control_url']}/cpu", timeout=60).json()["cpu_seconds"])


def vm(field: str) -> int:
    """A ``/proc/self/status`` memory figure in bytes: ``VmRSS`` now, ``VmHWM`` the high-water mark."""
    import re

    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(match.group(1)) * 1024 if match else 0


def reset_peak_memory() -> bool:
    """Make ``VmHWM`` start again from the current RSS (Linux), so a peak is the measured step's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


@contextmanager
def fresh_home() -> Iterator[Path]:
    """A new ``AIRFLOW_HOME`` with the embedded store's tables already made (a store exists in production)."""
    from airflow_provider_sms.store import SmsStore

    with tempfile.TemporaryDirectory(prefix="sms-bench-home-") as home:
        os.environ["AIRFLOW_HOME"] = home
        with SmsStore() as store:
            store.dialect  # noqa: B018  (connects and creates the tables)
        yield Path(home)


@dataclass(frozen=True)
class StoreTarget:
    """Where a run's store lives: the embedded SQLite file (``conn_id`` None) or PostgreSQL tables."""

    conn_id: str | None
    prefix: str

    @property
    def label(self) -> str:
        return "SQLite" if self.conn_id is None else "PostgreSQL"

    def open(self) -> Any:
        from airflow_provider_sms.store import SmsStore

        return SmsStore(self.conn_id, table_prefix=self.prefix)


_RUNS = iter(range(1, 10**9))


@contextmanager
def store_target(postgres_uri: str | None) -> Iterator[StoreTarget]:
    """A fresh store for one run: a new ``AIRFLOW_HOME`` with the embedded SQLite file, or, with a
    PostgreSQL URI, new tables under a prefix of their own, dropped afterwards. Tables exist before
    the run starts, as they would in production."""
    from airflow_provider_sms.store import drop_statements

    with fresh_home():
        if postgres_uri is None:
            yield StoreTarget(None, "sms_")
            return
        os.environ["AIRFLOW_CONN_SMS_BENCH_STORE"] = postgres_uri
        target = StoreTarget("sms_bench_store", f"bench{os.getpid()}r{next(_RUNS)}_")
        with target.open() as store:
            store.dialect  # noqa: B018  (creates the tables)
        try:
            yield target
        finally:
            with target.open() as store:
                conn = store.database.connection()
                cur = conn.cursor()
                for statement in drop_statements(target.prefix):
                    cur.execute(statement)
                conn.commit()


@dataclass
class Timing:
    """Wall, own CPU and simulator CPU seconds of one run."""

    wall: float = 0.0
    cpu: float = 0.0
    sim_cpu: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"wall": self.wall, "cpu": self.cpu, "sim_cpu": self.sim_cpu, **self.extra}


def timed(sim: Mapping[str, Any], run: Callable[[], Any]) -> tuple[Timing, Any]:
    sim_before, cpu_before = sim_cpu(sim), own_cpu()
    started = time.perf_counter()
    result = run()
    wall = time.perf_counter() - started
    timing = Timing(wall, own_cpu() - cpu_before, sim_cpu(sim) - sim_before)
    return timing, result


class FakeTaskInstance:
    """What the operators read from a task instance, so the benchmarks need no metadata database."""

    def __init__(self, run_id: str = "bench", task_id: str = "send") -> None:
        self.dag_id = "benchmarks"
        self.run_id = run_id
        self.task_id = task_id
        self.map_index = -1
        self.xcoms: dict[str, Any] = {}

    def xcom_pull(self, task_ids: str | None = None, **_: Any) -> Any:
        return self.xcoms.get(task_ids or "")


class CallTimer:
    """Adds up the seconds spent in chosen methods (e.g. the store's record_accepted), across threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._originals: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, label: str | None = None) -> None:
        import threading

        original = getattr(owner, name)
        key = label or name
        lock = threading.Lock()

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                with lock:
                    self.seconds[key] = self.seconds.get(key, 0.0) + elapsed

        self._originals.append((owner, name, original))
        setattr(owner, name, wrapper)

    def restore(self) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals.clear()
