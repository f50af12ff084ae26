"""The push receiver under load: acknowledged pushes per second, their latency, and that none is lost.

After a large send a vendor pushes thousands of reports a second; a receiver that falls behind makes
it retry or drop them. Ours is the standalone receiver (``python -m airflow_provider_sms.receiver``,
real uvicorn servers): two processes sharing one PostgreSQL store, and separately one process on the
embedded SQLite store. The baseline (``benchmarks.receiver_baseline``) is a bare FastAPI endpoint
served the same way, as many processes, inserting one row per push into a table keyed like the
store's, in the same database, committed before it answers.

Eight client processes, each one keep-alive ``requests`` session, POST single-record paasw_v2 report
pushes (bodies and headers from the simulator's own push formatting, the connection's push secret in
the URL), client ``i`` to receiver ``i mod n``, for a fixed time per variant. The time is cut into
segments that alternate between ours and the baseline (order flipped every round) while both sets of
servers run, so both see the same machine; the ratio is the median of the per-round ratios.

Reliability is checked, not assumed: afterwards every record answered 200 with the vendor's success
code must be in the store exactly once (rows counted per key against the acknowledged ids), no row
may have a key no client sent, and nothing may be left in the journal or the quarantine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from benchmarks.common import REPO, Row, child_env, median, rate, ratio_target, run_child

VENDOR = "paasw_v2"
CONN_ID = "sms_paasw_v2"
STORE_CONN_ID = "sms_bench_store"
#: the connection's ``callback_secret``, long enough to enable push
SECRET = "bench-push-secret-5d41402abc4b2a76"
CLIENTS = 8
RECEIVER_FLOOR = 0.7  # acknowledged records per second against the baseline
#: batch id of client ``c`` in segment ``s``: FIRST_BATCH + s * CLIENTS + c; warm-up pushes use WARMUP_BATCH
FIRST_BATCH = 770_000_000_000
WARMUP_BATCH = "769999999999"
WARMUP_PUSHES = 5
GAP = 0.5  # seconds between two segments, for the last requests of one to finish
REQUEST_TIMEOUT = 30.0
SQLITE_FILE = "sms_store.db"


def connection_json() -> str:
    """The paasw_v2 connection the receiver reads (``AIRFLOW_CONN_SMS_PAASW_V2``): the simulator's account
    with push on. Nothing is sent to the host: the receiver only receives."""
    from airflow_provider_sms.simulator.core import DEFAULT_ACCOUNTS

    account = DEFAULT_ACCOUNTS[VENDOR]
    return json.dumps(
        {
            "conn_type": f"sms_{VENDOR}",
            "host": "http://127.0.0.1:9",
            "login": account.login,
            "password": account.secret,
            "extra": {"callback_secret": SECRET},
        }
    )


def push_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/sms/callbacks/{CONN_ID}/reports?secret={SECRET}"


# ------------------------------------------------------------------------------------------------ clients


def child_client(params: dict[str, Any]) -> dict[str, Any]:
    """One client: on the parent's go, POST one-record pushes for each segment of the schedule in turn.

    Returns, per segment, the record numbers acknowledged (HTTP 200 and ``code`` 0), their latencies,
    how many were attempted and why the others failed.
    """
    from datetime import datetime, timezone

    from airflow_provider_sms.simulator.core import Gateway, Message, SimConfig
    from airflow_provider_sms.simulator.paasw_v2 import PaaswV2Protocol

    protocol = PaaswV2Protocol(Gateway(SimConfig()))
    client = int(params["client"])
    seconds = float(params["seconds"])
    sessions = {variant: requests.Session() for variant in params["urls"]}
    Path(params["ready"]).write_text(str(os.getpid()))
    go = Path(params["go"])
    deadline = time.time() + 600
    while not go.exists():
        if time.time() > deadline:
            raise RuntimeError("no go from the parent in 600 s")
        time.sleep(0.01)
    start_at = float(go.read_text())
    segments = []
    for position, segment in enumerate(params["schedule"]):
        variant, number = segment["variant"], int(segment["segment"])
        urls = params["urls"][variant]
        url, session = urls[client % len(urls)], sessions[variant]
        batch_id = str(FIRST_BATCH + number * CLIENTS + client)
        begin = start_at + position * (seconds + GAP)
        end = begin + seconds
        time.sleep(max(0.0, begin - time.time()))
        acked: list[int] = []
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        attempted = 0
        started = time.perf_counter()
        while time.time() < end:
            attempted += 1
            now = datetime.now(timezone.utc)
            message = Message(
                VENDOR, batch_id, f"138{attempted:08d}", "", "", now, 0.0, attempted % 10 != 0, 1, report_at=now
            )
            (payload,) = protocol.push_reports([message])
            sent = time.perf_counter()
            try:
                response = session.post(url, data=payload.body, headers=payload.headers, timeout=REQUEST_TIMEOUT)
                answer = response.json() if response.status_code == 200 else None
            except (requests.RequestException, ValueError) as exc:
                errors[type(exc).__name__] += 1
                continue
            if isinstance(answer, dict) and answer.get("code") == 0:
                latencies.append(time.perf_counter() - sent)
                acked.append(attempted)
            else:
                errors[f"HTTP {response.status_code}"] += 1
        segments.append(
            {
                "variant": variant,
                "segment": number,
                "batch_id": batch_id,
                "attempted": attempted,
                "acked": acked,
                "latencies": latencies,
                "errors": dict(errors),
                "elapsed": time.perf_counter() - started,
            }
        )
    for session in sessions.values():
        session.close()
    return {"client": client, "segments": segments}


# ------------------------------------------------------------------------------------------------ stores


def _baseline_table(prefix: str) -> str:
    return f"{prefix}baseline_reports"


def child_store(params: dict[str, Any]) -> dict[str, Any]:
    """``prepare``: the store's tables and the baseline's; ``read``: what both hold; ``drop``: PostgreSQL cleanup."""
    from airflow_provider_sms.store import SmsStore, drop_statements
    from benchmarks.receiver_baseline import create_table, postgres_connect, sqlite_connect

    action, prefix, uri = params["action"], params["prefix"], params.get("postgres")
    table = _baseline_table(prefix)
    if uri is not None:
        os.environ[f"AIRFLOW_CONN_{STORE_CONN_ID.upper()}"] = uri
        store = SmsStore(STORE_CONN_ID, table_prefix=prefix)
        connect = postgres_connect(uri)
    else:
        store = SmsStore(path=params["path"], table_prefix=prefix)
        connect = sqlite_connect(params["path"])
    with store:
        if action == "prepare":
            store.dialect  # noqa: B018  (creates the tables)
            create_table(connect, table)
            return {"prepared": prefix}
        conn = store.database.connection()
        cur = conn.cursor()
        if action == "drop":
            for statement in [*drop_statements(prefix), f"DROP TABLE IF EXISTS {table}"]:
                cur.execute(statement)
            conn.commit()
            return {"dropped": prefix}
        mark = "%s" if uri is not None else "?"
        cur.execute(f"SELECT batch_id, mobile FROM {prefix}delivery_reports WHERE vendor = {mark}", (VENDOR,))
        ours = [list(row) for row in cur.fetchall()]
        cur.execute(f"SELECT batch_id, mobile FROM {table}")
        baseline = [list(row) for row in cur.fetchall()]
        cur.execute(f"SELECT COUNT(*) FROM {prefix}journal")
        journal = int(cur.fetchone()[0])
        cur.execute(f"SELECT COUNT(*) FROM {prefix}quarantine")
        quarantine = int(cur.fetchone()[0])
        conn.commit()
    return {"ours": ours, "baseline": baseline, "journal": journal, "quarantine": quarantine}


# ------------------------------------------------------------------------------------------------ servers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    variant: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def servers(
    workdir: Path, *, processes: int, prefix: str, home: Path, postgres: str | None
) -> Iterator[dict[str, list[Server]]]:
    """``processes`` receivers and as many baseline servers, all serving; stopped (SIGTERM) on exit."""
    env = {"AIRFLOW_HOME": str(home), f"AIRFLOW_CONN_{CONN_ID.upper()}": connection_json()}
    if postgres is not None:
        env[f"AIRFLOW_CONN_{STORE_CONN_ID.upper()}"] = postgres
    ours = [sys.executable, "-m", "airflow_provider_sms.receiver", "--store-table-prefix", prefix]
    ours += ["--log-level", "warning"] + (["--store-conn-id", STORE_CONN_ID] if postgres else [])
    where = ["--postgres", postgres] if postgres else ["--sqlite", str(home / SQLITE_FILE)]
    baseline = [sys.executable, "-m", "benchmarks.receiver_baseline", "--secret", SECRET]
    baseline += ["--table", _baseline_table(prefix), *where]
    started: dict[str, list[Server]] = {"ours": [], "baseline": []}
    try:
        for variant, command in (("ours", ours), ("baseline", baseline)):
            for index in range(processes):
                port = _free_port()
                log = workdir / f"receiver-{variant}-{index}.log"
                with log.open("wb") as handle:
                    process = subprocess.Popen(
                        [*command, "--port", str(port)],
                        cwd=REPO,
                        stdin=subprocess.DEVNULL,
                        stdout=handle,
                        stderr=subprocess.STDOUT,
                        env=child_env(env),
                    )
                started[variant].append(Server(variant, port, process, log))
        for server in (*started["ours"], *started["baseline"]):
            _wait_serving(server)
        yield started
    finally:
        for server in (*started["ours"], *started["baseline"]):
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        for server in (*started["ours"], *started["baseline"]):
            try:
                server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


def _wait_serving(server: Server, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            tail = server.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{server.variant} server exited with {server.process.returncode}:\n{tail}")
        try:
            if requests.get(f"http://127.0.0.1:{server.port}/sms/health", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.variant} server on port {server.port} did not serve in {timeout:g} s")
        time.sleep(0.1)


def _warm_up(server: Server, first: int) -> list[str]:
    """A few pushes before the clock: the receiver opens its store on the first one."""
    from datetime import datetime, timezone

    from airflow_provider_sms.simulator.core import Gateway, Message, SimConfig
    from airflow_provider_sms.simulator.paasw_v2 import PaaswV2Protocol

    protocol = PaaswV2Protocol(Gateway(SimConfig()))
    mobiles = [f"139{first + k:08d}" for k in range(WARMUP_PUSHES)]
    with requests.Session() as session:
        for mobile in mobiles:
            now = datetime.now(timezone.utc)
            (payload,) = protocol.push_reports([Message(VENDOR, WARMUP_BATCH, mobile, "", "", now, 0.0, True, 1, now)])
            response = session.post(push_url(server.port), data=payload.body, headers=payload.headers, timeout=60)
            if response.status_code != 200 or response.json().get("code") != 0:
                raise RuntimeError(f"{server.variant} warm-up push answered {response.status_code}: {response.text}")
    return mobiles


# ------------------------------------------------------------------------------------------------ the run


def _load(workdir: Path, urls: dict[str, list[str]], seconds: float, rounds: int) -> list[dict[str, Any]]:
    """Eight client processes through the alternating schedule; their results."""
    schedule: list[dict[str, Any]] = []
    for round_no in range(rounds):
        order = ["ours", "baseline"] if round_no % 2 == 0 else ["baseline", "ours"]
        schedule += [{"variant": variant, "segment": len(schedule) + k} for k, variant in enumerate(order)]
    signals = workdir / "receiver-signals"
    signals.mkdir(exist_ok=True)
    go = signals / "go"
    go.unlink(missing_ok=True)
    ready = [signals / f"ready-{client}" for client in range(CLIENTS)]
    for path in ready:
        path.unlink(missing_ok=True)
    timeout = 600 + len(schedule) * (seconds / rounds + GAP + REQUEST_TIMEOUT)
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [
            pool.submit(
                run_child,
                "benchmarks.cases.receiver:child_client",
                {
                    "client": client,
                    "urls": urls,
                    "schedule": schedule,
                    "seconds": seconds / rounds,
                    "ready": str(ready[client]),
                    "go": str(go),
                },
                workdir,
                timeout=timeout,
            )
            for client in range(CLIENTS)
        ]
        deadline = time.monotonic() + 300
        while not all(path.exists() for path in ready):
            failed = [f for f in futures if f.done()]
            if failed:
                failed[0].result()  # raises the child's error
            if time.monotonic() > deadline:
                raise RuntimeError("the client processes did not start in 300 s")
            time.sleep(0.05)
        tmp = go.with_suffix(".tmp")
        tmp.write_text(repr(time.time() + 0.5))
        tmp.replace(go)
        return [future.result() for future in futures]


def _percentile(values: list[float], share: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return float(statistics.quantiles(values, n=1000, method="inclusive")[round(share * 1000) - 1])


def _audit(rows: list[list[str]], acked: set[tuple[str, str]], attempted: dict[str, int]) -> dict[str, int]:
    """Stored rows against what the clients sent: acknowledged and missing, stored twice, never sent."""
    per_key = Counter((str(batch), str(mobile)) for batch, mobile in rows)
    sent = {
        key
        for key in per_key
        if key[0] in attempted and key[1].startswith("138") and 1 <= int(key[1][3:]) <= attempted[key[0]]
    }
    return {
        "acknowledged": len(acked),
        "lost": sum(1 for key in acked if key not in per_key),
        "duplicated": sum(count - 1 for count in per_key.values()),
        "never_sent": len(per_key) - len(sent),
        "stored_unacknowledged": len(sent - acked),
    }


def _run_store(
    workdir: Path, label: str, postgres: str | None, processes: int, seconds: float, rounds: int
) -> list[Row]:
    directory = workdir / f"receiver-{label.lower()}"
    home = directory / "home"
    home.mkdir(parents=True, exist_ok=True)
    prefix = f"bench_rcv{os.getpid()}_"
    store = {"prefix": prefix, "postgres": postgres, "path": str(home / SQLITE_FILE)}
    run_child("benchmarks.cases.receiver:child_store", {**store, "action": "prepare"}, directory)
    try:
        with servers(directory, processes=processes, prefix=prefix, home=home, postgres=postgres) as running:
            warm: dict[str, set[tuple[str, str]]] = {"ours": set(), "baseline": set()}
            for variant, group in running.items():
                for index, server in enumerate(group):
                    mobiles = _warm_up(server, index * WARMUP_PUSHES)
                    warm[variant] |= {(WARMUP_BATCH, mobile) for mobile in mobiles}
            urls = {variant: [push_url(s.port) for s in group] for variant, group in running.items()}
            clients = _load(directory, urls, seconds, rounds)
        stored = run_child("benchmarks.cases.receiver:child_store", {**store, "action": "read"}, directory)
    finally:
        if postgres is not None:
            run_child("benchmarks.cases.receiver:child_store", {**store, "action": "drop"}, directory)
    return _rows(label, processes, seconds, rounds, clients, stored, warm)


def _rows(
    label: str,
    processes: int,
    seconds: float,
    rounds: int,
    clients: list[dict[str, Any]],
    stored: dict[str, Any],
    warm: dict[str, set[tuple[str, str]]],
) -> list[Row]:
    segments = [segment for client in clients for segment in client["segments"]]
    per_segment: dict[int, dict[str, Any]] = {}
    for segment in segments:
        into = per_segment.setdefault(segment["segment"], {"variant": segment["variant"], "acked": 0, "elapsed": 0.0})
        into["acked"] += len(segment["acked"])
        into["elapsed"] = max(into["elapsed"], segment["elapsed"])
    rates = {
        variant: [s["acked"] / s["elapsed"] for _, s in sorted(per_segment.items()) if s["variant"] == variant]
        for variant in ("ours", "baseline")
    }
    ratio = median([o / b for o, b in zip(rates["ours"], rates["baseline"], strict=True)])
    audits: dict[str, dict[str, int]] = {}
    latency: dict[str, tuple[float, float]] = {}
    errors: dict[str, Counter[str]] = {}
    for variant in ("ours", "baseline"):
        mine = [s for s in segments if s["variant"] == variant]
        acked = {(s["batch_id"], f"138{n:08d}") for s in mine for n in s["acked"]}
        attempted = {s["batch_id"]: int(s["attempted"]) for s in mine}
        rows = [row for row in stored[variant] if (row[0], row[1]) not in warm[variant]]
        audits[variant] = _audit(rows, acked, attempted)
        latencies = [value for s in mine for value in s["latencies"]]
        latency[variant] = (_percentile(latencies, 0.5), _percentile(latencies, 0.99))
        errors[variant] = Counter()
        for s in mine:
            errors[variant].update(s["errors"])
    base = audits["baseline"]
    if base["lost"] or base["duplicated"] or base["never_sent"]:
        raise AssertionError(f"the baseline's table disagrees with its acknowledgements: {base}")
    ours = audits["ours"]
    total = {variant: sum(len(s["acked"]) for s in segments if s["variant"] == variant) for variant in rates}
    where = f"{processes} receiver process{'es' if processes > 1 else ''}, {label}"
    details = {
        "rates_per_segment": rates,
        "acknowledged": total,
        "audit": audits,
        "journal_left": stored["journal"],
        "quarantined": stored["quarantine"],
        "errors": {variant: dict(counts) for variant, counts in errors.items()},
        "latency_p50_p99": latency,
        "segment_seconds": seconds / rounds,
    }
    error_text = (
        "; ".join(f"{variant} errors {dict(counts)}" for variant, counts in errors.items() if counts)
        or "no failed requests"
    )
    return [
        Row(
            case=f"receiver: acknowledged single-record pushes/s, {CLIENTS} clients, {where}",
            ours=rate(median(rates["ours"]), 1.0),
            baseline=rate(median(rates["baseline"]), 1.0),
            **ratio_target(ratio, at_least=RECEIVER_FLOOR),
            note=(
                f"{seconds:g} s each ({rounds} alternating segments), {VENDOR} pushes; baseline: a bare FastAPI "
                f"endpoint, one committed INSERT per push; {total['ours']:,} vs {total['baseline']:,} acknowledged; "
                f"{error_text}"
            ),
            details=details,
        ),
        Row(
            case=f"receiver: push latency p50 / p99, {where}",
            ours=f"{latency['ours'][0] * 1000:.1f} / {latency['ours'][1] * 1000:.1f} ms",
            baseline=f"{latency['baseline'][0] * 1000:.1f} / {latency['baseline'][1] * 1000:.1f} ms",
            ratio=f"{latency['ours'][1] / latency['baseline'][1]:.2f}× (p99)",
            target="–",
            passed=None,
            note="client-side, from sending the request to reading the answer, acknowledged pushes only",
        ),
        Row(
            case=f"receiver: acknowledged records lost / duplicated, {where}",
            ours=f"{ours['lost']} lost, {ours['duplicated']} duplicated of {ours['acknowledged']:,}",
            baseline=f"{base['lost']} lost, {base['duplicated']} duplicated of {base['acknowledged']:,}",
            ratio=f"journal {stored['journal']}, quarantine {stored['quarantine']}",
            target="0 lost, 0 duplicated",
            passed=not (ours["lost"] or ours["duplicated"] or ours["never_sent"] or stored["journal"])
            and not stored["quarantine"],
            note=(
                "rows in the store per (batch, mobile) against the ids answered 200 with code 0; also failing: "
                f"a row no client sent ({ours['never_sent']}), a page left in the journal or quarantined; "
                f"{ours['stored_unacknowledged']} stored but not acknowledged (a failed request may still store)"
            ),
            details={"audit": audits},
        ),
    ]


def run_receiver(workdir: Path, *, seconds: float, rounds: int, postgres: str | None = None) -> list[Row]:
    """The embedded SQLite store with one receiver; with ``postgres``, also two receivers on PostgreSQL."""
    rows = _run_store(workdir, "SQLite", None, 1, seconds, rounds)
    if postgres is not None:
        rows += _run_store(workdir, "PostgreSQL", postgres, 2, seconds, rounds)
    return rows
