"""Run the benchmark suite: ``python -m benchmarks.run`` (full, ~10 min) or ``--quick`` (smoke, < 2 min).

Every case runs ours and a hand-written baseline in the same run, against the bundled simulator in
its own process on localhost and the embedded SQLite store, and reports medians and their ratio
(a shared, noisy machine makes single absolute times meaningless). The table is printed and written
to ``<out>/latest.md`` and ``<out>/latest.json`` with a description of the machine.

Cases: ``send`` (throughput per vendor), ``latency`` (50 ms vendor latency, with ``max_concurrency``),
``sync`` (queued delivery reports into the store), ``sensor`` (one delivery check), ``imports``
(DAG-file import cost), ``memory`` (peak memory of a large send), ``receiver`` (pushed reports
under load: the standalone receiver against a bare FastAPI endpoint, acknowledged pushes per second,
latency, and an audit that no acknowledged record is lost or stored twice; SQLite, and two receiver
processes on PostgreSQL when it is given).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # ``python benchmarks/run.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS, VENDORS, Row, Simulator, machine, row_dict, simulator

CASES = ("send", "latency", "sync", "sensor", "imports", "memory", "receiver")
#: cases that need no simulator process (the receiver case makes its own servers and clients)
STANDALONE = frozenset({"imports", "receiver"})


@dataclass(frozen=True)
class Sizes:
    send_count: int
    send_rounds: int
    send_vendors: tuple[str, ...]
    latency: float
    latency_count: int
    latency_rounds: int
    latency_plan: tuple[tuple[str, int], ...]
    sync_count: int
    sync_rounds: int
    sensor_pending: tuple[int, int]
    sensor_checks: int
    sensor_query_vendor: bool
    import_runs: int
    memory_count: int
    receiver_seconds: float  # per variant (ours, baseline), cut into receiver_rounds alternating segments
    receiver_rounds: int


FULL = Sizes(
    send_count=100_000,
    send_rounds=9,  # medians of nine back-to-back pairs: on a shared machine five moved by ±0.05
    send_vendors=VENDORS,
    latency=0.05,
    latency_count=100_000,
    latency_rounds=2,
    latency_plan=(("paasw_v2", 1), *((vendor, 4) for vendor in VENDORS)),
    sync_count=1_000_000,
    sync_rounds=3,
    sensor_pending=(10_000, 100_000),
    sensor_checks=15,
    sensor_query_vendor=True,
    import_runs=7,
    memory_count=1_000_000,
    receiver_seconds=60,
    receiver_rounds=4,
)
QUICK = Sizes(
    send_count=5_000,
    send_rounds=1,
    send_vendors=("paasw_v2", "cloud_mas"),
    latency=0.05,
    latency_count=10_000,
    latency_rounds=1,
    latency_plan=(("paasw_v2", 4),),
    sync_count=10_000,
    sync_rounds=1,
    sensor_pending=(1_000, 10_000),
    sensor_checks=5,
    sensor_query_vendor=False,
    import_runs=1,
    memory_count=50_000,
    receiver_seconds=2,
    receiver_rounds=1,
)


def run_cases(
    cases: tuple[str, ...],
    sizes: Sizes,
    workdir: Path,
    progress: Callable[[str], None],
    postgres: str | None = None,
) -> list[Row]:
    from benchmarks.cases import imports, receiver, send, sensor, sync

    rows: list[Row] = []
    needs_simulator = any(case not in STANDALONE for case in cases)

    def one(name: str, sim: Simulator | None) -> None:
        started = time.perf_counter()
        progress(f"== {name} ...")
        if name == "send":
            assert sim is not None
            new = send.run_throughput(
                sim,
                workdir,
                count=sizes.send_count,
                rounds=sizes.send_rounds,
                vendors=sizes.send_vendors,
                postgres=postgres,
            )
        elif name == "latency":
            assert sim is not None
            new = send.run_latency(
                sim,
                workdir,
                count=sizes.latency_count,
                rounds=sizes.latency_rounds,
                latency=sizes.latency,
                plan=list(sizes.latency_plan),
            )
        elif name == "sync":
            assert sim is not None
            new = sync.run_sync(sim, workdir, count=sizes.sync_count, rounds=sizes.sync_rounds, postgres=postgres)
        elif name == "sensor":
            assert sim is not None
            new = sensor.run_sensor(
                sim,
                workdir,
                pending=sizes.sensor_pending,
                checks=sizes.sensor_checks,
                query_vendor=sizes.sensor_query_vendor,
            )
        elif name == "imports":
            new = imports.run_imports(workdir, runs=sizes.import_runs)
        elif name == "receiver":
            new = receiver.run_receiver(
                workdir, seconds=sizes.receiver_seconds, rounds=sizes.receiver_rounds, postgres=postgres
            )
        elif name == "memory":
            assert sim is not None
            new = send.run_memory(sim, workdir, count=sizes.memory_count)
        else:
            raise ValueError(f"unknown case {name!r}; known: {', '.join(CASES)}")
        for row in new:
            progress(f"   {row.verdict:4}  {row.case}: ours {row.ours}, baseline {row.baseline}, ratio {row.ratio}")
        progress(f"   ({time.perf_counter() - started:.0f} s)")
        rows.extend(new)

    if needs_simulator:
        with simulator(workdir) as sim:
            for name in cases:
                one(name, sim)
    else:
        for name in cases:
            one(name, None)
    return rows


def _postgres_version(uri: str) -> str:
    try:
        import psycopg

        with psycopg.connect(uri, connect_timeout=10) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return f"PostgreSQL {row[0] if row else '?'}"
    except Exception as exc:  # informative only
        return f"PostgreSQL (version unknown: {type(exc).__name__})"


def table(rows: list[Row]) -> str:
    lines = ["| case | ours | baseline | ratio | target | pass |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.case} | {r.ours} | {r.baseline} | {r.ratio} | {r.target} | {r.verdict} |" for r in rows]
    return "\n".join(lines)


def markdown(rows: list[Row], info: dict[str, object], command: str, *, quick: bool = False) -> str:
    notes = [f"{i}. **{r.case}**: {r.note}" for i, r in enumerate(rows, 1) if r.note]
    machine_lines = [f"- {key}: {value}" for key, value in info.items()]
    smoke = (
        ["**Quick mode: a smoke run. Its sizes are far too small for the targets to mean anything.**", ""]
        if quick
        else []
    )
    return "\n".join(
        [
            "# Benchmark results",
            "",
            *smoke,
            f"Command: `{command}`. Ours and the baseline ran side by side in the same run; times are medians "
            "of interleaved runs, ratios are medians of the ratios of runs made back to back (see `latest.json` "
            "for every run).",
            "",
            "Machine:",
            "",
            *machine_lines,
            "",
            table(rows),
            "",
            "Notes:",
            "",
            *notes,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round: a smoke run in well under 2 min")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument(
        "--out",
        type=Path,
        help="where latest.md/latest.json go (default benchmarks/results, or benchmarks/results/quick with --quick)",
    )
    parser.add_argument(
        "--postgres",
        metavar="URI",
        default=os.environ.get("SMS_BENCH_POSTGRES_URI") or os.environ.get("SMS_TEST_POSTGRES_URI"),
        help="also run the store-bound cases against PostgreSQL (tables under a throwaway prefix); default "
        "$SMS_BENCH_POSTGRES_URI or $SMS_TEST_POSTGRES_URI; not in --quick unless given here",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (child logs, stores)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    cases = tuple(c.strip() for c in args.cases.split(",") if c.strip())
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
    sizes = QUICK if args.quick else FULL
    postgres = None if args.no_postgres else args.postgres
    if args.quick and "--postgres" not in (argv if argv is not None else sys.argv[1:]):
        postgres = None
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    workdir = Path(tempfile.mkdtemp(prefix="sms-benchmarks-"))
    info = machine()
    started = time.perf_counter()

    def progress(text: str) -> None:
        print(text, flush=True)

    progress(
        f"benchmarks ({'quick' if args.quick else 'full'}): {', '.join(cases)}; "
        f"PostgreSQL {'too' if postgres else 'not used'}; work directory {workdir}"
    )
    info["postgresql"] = _postgres_version(postgres) if postgres else "not used"
    try:
        rows = run_cases(cases, sizes, workdir, progress, postgres)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    info["duration"] = f"{time.perf_counter() - started:.0f} s"
    command = "python -m benchmarks.run" + (" --quick" if args.quick else "")
    if args.cases != ",".join(CASES):
        command += f" --cases {args.cases}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(markdown(rows, info, command, quick=args.quick), encoding="utf-8")
    (out / "latest.json").write_text(
        json.dumps({"command": command, "machine": info, "rows": [row_dict(r) for r in rows]}, indent=1),
        encoding="utf-8",
    )
    print()
    print(table(rows))
    print(f"\nwritten: {out / 'latest.md'}, {out / 'latest.json'} ({info['duration']})")
    failed = [r for r in rows if r.passed is False]
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
