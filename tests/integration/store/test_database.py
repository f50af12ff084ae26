"""The store's plumbing: drivers and connections, the embedded file, concurrent writers, value conventions."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sms.errors import SmsConfigurationError
from airflow_provider_sms.store import (
    BatchProgress,
    SaveResult,
    SmsStore,
    database,
)
from airflow_provider_sms.store.database import json_text, utc_text
from tests.integration.store.support import (
    VENDOR,
    Backend,
    drop_tables,
    numbers,
    postgres_uri,
    progress,
    record,
    report,
)

pytestmark = pytest.mark.integration


def test_backend_uses_the_intended_driver(backend: Backend) -> None:
    store = backend.open()
    assert store.dialect == ("sqlite" if backend.name == "sqlite" else "postgresql")
    driver = store.database.driver
    assert driver == {"sqlite": "sqlite3", "postgres": "psycopg", "postgres-psycopg2": "psycopg2"}[backend.name]


def test_table_prefix_must_be_an_identifier(tmp_path: Path) -> None:
    with pytest.raises(SmsConfigurationError, match="table_prefix"):
        SmsStore(path=str(tmp_path / "x.db"), table_prefix="sms; DROP TABLE x; --")
    with pytest.raises(SmsConfigurationError, match="not both"):
        SmsStore("some_conn", path=str(tmp_path / "x.db"))


def test_sqlite_through_a_common_sql_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "via_conn.db"
    monkeypatch.setenv("AIRFLOW_CONN_SMS_TEST_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    with SmsStore("sms_test_sqlite", table_prefix="viaconn_") as store:
        assert store.dialect == "sqlite"
        record(store, "k1", "B1", numbers(2))
        assert store.save_reports([report("B1", numbers(1)[0])]) == SaveResult(1, 0, 0)
        assert store.batch_progress(VENDOR, ["B1"]) == BatchProgress(2, 1, 0)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT delivered FROM viaconn_requests").fetchall() == [(1,)]


def test_connections_the_store_cannot_use(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SmsConfigurationError, match="sms_test_missing"):
        SmsStore("sms_test_missing").accepted_requests(["k"])
    monkeypatch.setenv("AIRFLOW_CONN_SMS_TEST_SMTP", json.dumps({"conn_type": "smtp", "host": "localhost"}))
    with pytest.raises(SmsConfigurationError, match=r"'sms_test_smtp'.*not a common\.sql DbApiHook"):
        SmsStore("sms_test_smtp").accepted_requests(["k"])


def test_embedded_store_defaults_to_airflow_home_with_wal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "airflow-home"
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    with SmsStore() as store:
        assert store.path == str(home / "sms_store.db")
        assert store.opted_out(["1"]) == set()
    assert (home / "sms_store.db").exists()
    with sqlite3.connect(home / "sms_store.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.postgres
def test_postgres_connection_asking_for_dict_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = postgres_uri()
    monkeypatch.setenv("AIRFLOW_CONN_SMS_TEST_PG_DICT", f"{uri}?cursor=dictcursor")
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    try:
        with SmsStore("sms_test_pg_dict", table_prefix=prefix) as store:
            record(store, "k1", "B1", numbers(2))
            store.save_reports([report("B1", numbers(1)[0])])
            assert progress(store, "k1") == (2, 1, 0)
    finally:
        drop_tables(uri, prefix)


def _write_batch(store: SmsStore, worker: int, per_worker: int) -> None:
    store.page_size = 100
    mobiles = numbers(per_worker, 1_000_000 * (worker + 1))
    half = per_worker // 2
    record(store, f"w{worker}a", f"W{worker}A", mobiles[:half])
    record(store, f"w{worker}b", f"W{worker}B", mobiles[half:])
    for start in range(0, per_worker, 250):
        chunk = mobiles[start : start + 250]
        store.save_reports(
            [report(f"W{worker}A" if start < half else f"W{worker}B", m) for m in chunk]
            + [report(f"UNSENT{worker}", m, "failed") for m in chunk[:10]]
        )


def _check_workers(path: Path, workers: int, per_worker: int) -> None:
    with SmsStore(path=str(path)) as store:
        for worker in range(workers):
            ids = [f"W{worker}A", f"W{worker}B"]
            assert store.batch_progress(VENDOR, ids) == BatchProgress(per_worker, per_worker, 0), worker
        seqs = [row["seq"] for page in store.iter_reports() for row in page]
    assert len(seqs) == len(set(seqs)) == workers * (per_worker + per_worker // 250 * 10)


def test_concurrent_writers_on_the_embedded_store_threads(tmp_path: Path) -> None:
    path, workers, per_worker = tmp_path / "shared.db", 4, 2000
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            with SmsStore(path=str(path)) as store:
                _write_batch(store, worker, per_worker)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    _check_workers(path, workers, per_worker)


def test_concurrent_writers_on_the_embedded_store_processes(tmp_path: Path) -> None:
    path, workers, per_worker = tmp_path / "shared.db", 2, 2000
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r})
        from tests.integration.store.test_database import SmsStore, _write_batch
        with SmsStore(path={str(path)!r}) as store:
            _write_batch(store, int(sys.argv[1]), {per_worker})
        """
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(w)], env=env, stderr=subprocess.PIPE, text=True)
        for w in range(workers)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
    _check_workers(path, workers, per_worker)


def test_concurrent_writers_keep_counters_and_seqs_exact(backend: Backend) -> None:
    """Writers of one store, each with its own connection: on PostgreSQL with psycopg 3, report pages go in
    a pipeline (the counter's lock sent with the lookups, the writes with the commit); counters stay exact
    and no seq is drawn twice either way."""
    workers, per_worker = 3, 500
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            _write_batch(backend.open(), worker, per_worker)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    store = backend.open()
    for worker in range(workers):
        assert store.batch_progress(VENDOR, [f"W{worker}A", f"W{worker}B"]) == BatchProgress(per_worker, per_worker, 0)
    assert store.database._pipelines == (backend.name == "postgres")  # known once connected
    seqs = [row["seq"] for page in store.iter_reports() for row in page]
    assert len(seqs) == len(set(seqs)) == workers * (per_worker + per_worker // 250 * 10)
    backend.assert_counters_exact()


def test_one_store_can_be_handed_between_threads(tmp_path: Path) -> None:
    with SmsStore(path=str(tmp_path / "handed.db")) as store:
        record(store, "k1", "B1", numbers(2))
        results: list[BatchProgress] = []
        thread = threading.Thread(target=lambda: results.append(store.batch_progress(VENDOR, ["B1"])))
        thread.start()
        thread.join(timeout=30)
        assert results == [BatchProgress(2, 0, 0)]


@pytest.mark.parametrize(
    "value",
    [
        {"a": "中文", "b": [1, 2.5, None, True], "c": {"d": 'q"uote\n'}},
        {"when": datetime(2024, 1, 1, tzinfo=timezone.utc), "amount": Decimal("1.10")},
        {},
    ],
)
def test_json_is_json_dumps_with_default_str(value: dict[str, Any]) -> None:
    assert json_text(value) == json.dumps(value, default=str, ensure_ascii=False)


def test_times_are_fixed_width_utc_text_in_time_order() -> None:
    plus8 = timezone(timedelta(hours=8))
    times = [
        datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc),
        datetime(2024, 5, 1, 16, 0, 0, 1, tzinfo=plus8),
        datetime(2024, 5, 1, 8, 0, 1, tzinfo=timezone.utc),
    ]
    texts = [utc_text(t) for t in times]
    assert texts[0] == "2024-05-01T08:00:00.000000+00:00"
    assert texts[1] == "2024-05-01T08:00:00.000001+00:00"
    assert len({len(t) for t in texts if t}) == 1
    assert sorted(texts) == texts  # type: ignore[type-var]
    assert utc_text(None) is None
    with pytest.raises(ValueError, match="naive"):
        utc_text(datetime(2024, 5, 1))


def test_importing_the_store_loads_no_database_driver() -> None:
    code = (
        "import sys, airflow_provider_sms.errors, airflow_provider_sms.records\n"
        "before = set(sys.modules)\n"
        "import airflow_provider_sms.store\n"
        "heavy = ('psycopg', 'psycopg2', 'airflow.providers.common.sql.hooks.sql',"
        " 'airflow.providers.postgres.hooks.postgres', 'airflow.providers.sqlite.hooks.sqlite')\n"
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in ('psycopg', 'psycopg2')"
        " or m in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("copied_every", [None, 10**9], ids=["as-it-grows", "never-in-between"])
def test_a_writer_that_commits_on_and_on_has_its_log_copied_as_it_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copied_every: int | None
) -> None:
    """A send commits once per request, with the network's wait between commits. Every 32 commits the
    embedded file's log is copied in the background, so it starts over; left to the close, it grows for the
    whole send (the control case, with the copying turned off, shows that it does)."""
    if copied_every is not None:
        monkeypatch.setattr(database, "_CHECKPOINT_EVERY_COMMITS", copied_every)
    path = tmp_path / "log.db"
    with SmsStore(path=str(path)) as store:
        record(store, "first", "B0", numbers(5))
        for index in range(1, 161):
            record(store, f"k{index}", f"B{index}", numbers(5, start=5 * index))
            time.sleep(0.002)  # a request on the wire
        other = sqlite3.connect(path)
        try:  # (busy, frames in the log, frames copied)
            _, frames, _ = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            other.close()
        # a commit here writes 4-5 pages; copied every 32, the log holds at most two rounds of them even
        # when one copy finishes late, against every commit's pages without
        if copied_every is None:
            assert 0 < frames <= 64 * 5, frames
        else:
            assert frames >= 160 * 4, frames
    assert not Path(f"{path}-wal").exists()  # the close copied the rest and removed it
