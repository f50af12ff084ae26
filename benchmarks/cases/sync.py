"""Syncing queued delivery reports into the store, against a pull-then-one-executemany baseline.

The simulator's paasw_v2 queue is filled with ``count`` due reports straight in its process (untimed),
in batches of 1,000 whose ids match sends already recorded in the store, as after a real send: so
our sync also keeps each batch's delivery counters, as it must. paasw_v2 hands out up to 1,000
reports a pull. Ours is ``airflow_provider_sms.pulling.pull_reports`` (what the sync operator, the
sensor and the trigger run) into the embedded SQLite store, committing every page before the next
pull; the baseline pulls the whole queue with ``requests``, builds the same row the store keeps for
each report (status, description, UTC time, raw record as JSON, sequence number) and inserts them
all with one ``executemany`` in one transaction, holding every row in memory until then. With
PostgreSQL, ours syncs into a PostgreSQL store against the same baseline inserting with plain psycopg.
Each run is a fresh process, so the peak RSS is the run's own.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import (
    Row,
    Simulator,
    control,
    median,
    megabytes,
    paired_ratio,
    rate,
    ratio_target,
    run_child,
)

VENDOR = "paasw_v2"
PER_BATCH = 1000
FIRST_BATCH = 880_000_000_000
SYNC_FLOOR = 0.5  # rows per second against the baseline


def _batches(count: int) -> list[tuple[str, list[str]]]:
    return [
        (str(FIRST_BATCH + k), [f"138{i:08d}" for i in range(start, min(start + PER_BATCH, count))])
        for k, start in enumerate(range(0, count, PER_BATCH))
    ]


def _record_sends(store: Any, count: int) -> None:
    from datetime import datetime, timezone

    from airflow_provider_sms.records import SendReceipt
    from airflow_provider_sms.store import TaskIdentity

    task = TaskIdentity("benchmarks", "sync", "send", -1)
    for batch_id, mobiles in _batches(count):
        receipt = SendReceipt(VENDOR, batch_id, tuple(mobiles), datetime.now(timezone.utc))
        store.record_accepted(f"bench-{batch_id}", receipt, conn_id=f"sms_{VENDOR}", task=task)


def child_prepare(params: dict[str, Any]) -> dict[str, Any]:
    """The store as it is after sending those messages: one accepted request per batch, one row per number."""
    from airflow_provider_sms.store import SmsStore

    with SmsStore(path=params["path"]) as store:
        _record_sends(store, int(params["count"]))
    return {"path": params["path"], "count": int(params["count"])}


def child_sync(params: dict[str, Any]) -> dict[str, Any]:
    """One timed sync (ours, into SQLite or PostgreSQL, or the baseline) of a queue the parent has just filled."""
    from benchmarks.baselines import pull_reports_into_postgres, pull_reports_into_sqlite
    from benchmarks.cases._child import reset_peak_memory, store_target, timed, use_simulator, vm

    sim, variant, count = params["sim"], params["variant"], int(params["count"])
    use_simulator(sim)
    connection = json.loads(sim["connections"][VENDOR])
    if variant == "baseline":
        with tempfile.TemporaryDirectory(prefix="sms-bench-sync-") as directory:
            rss_before = vm("VmRSS")
            reset_peak_memory()
            timing, stored = timed(sim, lambda: pull_reports_into_sqlite(connection, os.path.join(directory, "b.db")))
            peak = vm("VmHWM")
        if stored != count:
            raise AssertionError(f"baseline: stored {stored} of {count} reports")
        return {**timing.to_dict(), "rss_before": rss_before, "peak_rss": peak, "stored": stored}
    if variant == "baseline_postgres":
        table = f"bench_baseline_{os.getpid()}"
        timing, stored = timed(sim, lambda: pull_reports_into_postgres(connection, params["postgres"], table))
        if stored != count:
            raise AssertionError(f"PostgreSQL baseline: stored {stored} of {count} reports")
        return {**timing.to_dict(), "stored": stored}

    from airflow_provider_sms.hooks import get_sms_hook
    from airflow_provider_sms.pulling import pull_reports

    postgres = params.get("postgres") if variant == "ours_postgres" else None
    with store_target(postgres) as target:
        if postgres is None:
            shutil.copyfile(params["template"], os.path.join(os.environ["AIRFLOW_HOME"], "sms_store.db"))
        hook = get_sms_hook(f"sms_{VENDOR}")
        store = target.open()
        if postgres is not None:
            _record_sends(store, count)  # the sends, as the SQLite template has them (untimed)
        store.batch_progress(VENDOR, [str(FIRST_BATCH)])  # connects: opening the store is not the sync
        max_pulls = count // PER_BATCH + 10
        rss_before = vm("VmRSS")
        reset_peak_memory()
        timing, result = timed(sim, lambda: pull_reports(hook, store, max_pulls=max_pulls))
        peak = vm("VmHWM")
        progress = store.batch_progress(VENDOR, [b for b, _ in _batches(count)])
        store.close()
        hook.close()
    if result.inserted != count or progress.delivered != count:
        raise AssertionError(f"stored {result.inserted} of {count}; batch counters say {progress.delivered} delivered")
    return {
        **timing.to_dict(),
        "rss_before": rss_before,
        "peak_rss": peak,
        "stored": result.inserted,
        "pulls": result.pulls,
        "store": target.label,
    }


def _fill(sim: Simulator, count: int) -> float:
    """A fresh simulator whose paasw_v2 queue holds ``count`` due reports (untimed)."""
    sim.reset()
    filled = control(
        sim.info, "/fill", {"vendor": VENDOR, "count": count, "per_batch": PER_BATCH, "first_batch": FIRST_BATCH}
    )
    return float(filled["seconds"])


def run_sync(sim: Simulator, workdir: Path, *, count: int, rounds: int, postgres: str | None = None) -> list[Row]:
    template = workdir / f"sync-template-{count}.db"
    run_child("benchmarks.cases.sync:child_prepare", {"path": str(template), "count": count}, workdir)
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "baseline": []}
    fills: list[float] = []
    for round_no in range(rounds):
        order = ["ours", "baseline"] if round_no % 2 == 0 else ["baseline", "ours"]
        for variant in order:
            fills.append(_fill(sim, count))
            runs[variant].append(
                run_child(
                    "benchmarks.cases.sync:child_sync",
                    {"sim": sim.info, "variant": variant, "count": count, "template": str(template)},
                    workdir,
                )
            )
    if postgres is not None:
        runs["ours_postgres"], runs["baseline_postgres"] = [], []
        for round_no in range(max(1, rounds - 1)):
            order = ["ours_postgres", "baseline_postgres"]
            for variant in order if round_no % 2 == 0 else order[::-1]:
                fills.append(_fill(sim, count))
                runs[variant].append(
                    run_child(
                        "benchmarks.cases.sync:child_sync",
                        {"sim": sim.info, "variant": variant, "count": count, "postgres": postgres},
                        workdir,
                    )
                )
    sim.reset()
    ours = median([r["wall"] for r in runs["ours"]])
    base = median([r["wall"] for r in runs["baseline"]])
    peak = max(int(r["peak_rss"]) for r in runs["ours"])
    added = max(int(r["peak_rss"]) - int(r["rss_before"]) for r in runs["ours"])
    base_peak = max(int(r["peak_rss"]) for r in runs["baseline"])
    ratio = paired_ratio(runs["baseline"], runs["ours"])
    details = {
        "runs": runs,
        "fill_seconds": fills,
        "median_wall": {"ours": ours, "baseline": base},
        "simulator_busy_share": {
            "ours": median([r["sim_cpu"] / r["wall"] for r in runs["ours"]]),
            "baseline": median([r["sim_cpu"] / r["wall"] for r in runs["baseline"]]),
        },
        "client_cpu_share": {
            "ours": median([r["cpu"] / r["wall"] for r in runs["ours"]]),
            "baseline": median([r["cpu"] / r["wall"] for r in runs["baseline"]]),
        },
    }
    rows = [
        Row(
            case=f"sync {count:,} queued delivery reports into the store ({VENDOR}, 1,000 a pull)",
            ours=rate(count, ours),
            baseline=rate(count, base),
            **ratio_target(ratio, at_least=SYNC_FLOOR),
            note="ours commits each page and keeps the batch counters; the baseline inserts once at the end",
            details=details,
        ),
        Row(
            case=f"sync {count:,} queued delivery reports — peak memory of the process",
            ours=megabytes(peak),
            baseline=f"baseline {megabytes(base_peak)}",
            ratio=f"+{megabytes(added)}",
            target="≤ 300 MB",
            passed=peak <= 300 * 2**20,
            note="RSS high-water of the whole task process (interpreter and imports included); ratio column: "
            "what the sync added",
            details={
                "peak_rss": [r["peak_rss"] for r in runs["ours"]],
                "rss_before": [r["rss_before"] for r in runs["ours"]],
            },
        ),
    ]
    if "ours_postgres" in runs:
        pg_ours = median([r["wall"] for r in runs["ours_postgres"]])
        pg_base = median([r["wall"] for r in runs["baseline_postgres"]])
        pg_ratio = paired_ratio(runs["baseline_postgres"], runs["ours_postgres"])
        vs_sqlite = base / pg_ours
        rows.append(
            Row(
                case=f"sync {count:,} queued delivery reports into a PostgreSQL store",
                ours=rate(count, pg_ours),
                baseline=rate(count, pg_base),
                **ratio_target(pg_ratio, at_least=SYNC_FLOOR),
                note=(
                    "baseline: the same pull, then one pipelined psycopg executemany into PostgreSQL in one "
                    f"transaction; against the SQLite baseline above ours is {vs_sqlite:.2f}×; peak RSS "
                    f"{megabytes(max(int(r['peak_rss']) for r in runs['ours_postgres']))}"
                ),
                details={"median_wall": {"ours": pg_ours, "baseline": pg_base}, "vs_sqlite_baseline": vs_sqlite},
            )
        )
    return rows
