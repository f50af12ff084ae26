"""The receiver case's baseline: a bare FastAPI endpoint that takes a paasw_v2 push and inserts it.

What a team would write by hand for one vendor: check the ``secret`` query value, decode the
``{count, data: [...]}`` body, build one row per record (the columns the store keeps of a report)
and insert it into a table keyed like the store's ``delivery_reports``, committed before the 200 is
answered. Each worker thread has its own database connection (SQLite in WAL mode with
``synchronous = NORMAL``, as the embedded store; or PostgreSQL with psycopg). No connection lookup,
no journal, no sequence counter, no batch counters, no quarantine: that is what ours adds.

    python -m benchmarks.receiver_baseline --port P --secret S --table T (--sqlite FILE | --postgres URI)

Served by uvicorn with the standalone receiver's settings (``airflow_provider_sms.receiver.__main__``).
"""

from __future__ import annotations

import argparse
import hmac
import json
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from benchmarks.baselines import _REPORTS_TABLE

VENDOR = "paasw_v2"
CONN_ID = "sms_paasw_v2"
_ZONE = ZoneInfo("Asia/Shanghai")


def report_row(item: dict[str, Any], fetched_at: str, seq: int) -> tuple[Any, ...]:
    """The row the store keeps of one paasw_v2 report (as ``baselines.pull_report_rows`` builds it)."""
    code, text = str(item["chnRptCode"]), str(item["chnRptDate"])
    at = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=_ZONE).astimezone(timezone.utc).isoformat()
    delivered = code == "DELIVRD"
    return (
        VENDOR,
        str(item["batchId"]),
        str(item["mobile"]),
        "delivered" if delivered else "failed",
        code,
        "delivered" if delivered else f"operator code {code}",
        at,
        json.dumps(item, ensure_ascii=False, separators=(",", ":")),
        CONN_ID,
        fetched_at,
        seq,
    )


def create_table(connect: Callable[[], Any], table: str) -> None:
    """The baseline's table, made by the case before the servers start (as the store's tables are)."""
    db = connect()
    try:
        db.execute(_REPORTS_TABLE.format(name=table).replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
        db.commit()
    finally:
        db.close()


def sqlite_connect(path: str) -> Callable[[], Any]:
    def connect() -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA busy_timeout = 60000")
        db.isolation_level = "DEFERRED"  # implicit transactions again: commit() ends each insert's own
        return db

    return connect


def postgres_connect(uri: str) -> Callable[[], Any]:
    def connect() -> Any:
        import psycopg

        return psycopg.connect(uri)

    return connect


def create_app(connect: Callable[[], Any], table: str, secret: str, *, postgres: bool) -> FastAPI:
    """The endpoint at the receiver's own path, so that the clients differ only in the port."""
    local = threading.local()
    counter = iter(range(1, 2**62))
    mark = "%s" if postgres else "?"
    insert = f"INSERT INTO {table} VALUES ({', '.join([mark] * 11)}) ON CONFLICT (vendor, batch_id, mobile) DO NOTHING"

    def store(rows: list[tuple[Any, ...]]) -> None:
        db = getattr(local, "db", None)
        if db is None:
            db = local.db = connect()
        try:
            cur = db.cursor()
            cur.executemany(insert, rows)
            db.commit()
        except BaseException:
            db.rollback()
            raise

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/sms/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/sms/callbacks/{conn_id}/reports")
    async def receive(conn_id: str, request: Request) -> JSONResponse:
        given = request.query_params.get("secret") or ""
        if conn_id != CONN_ID or not hmac.compare_digest(given.encode(), secret.encode()):
            return JSONResponse({"code": 401, "message": "not authenticated"}, status_code=401)
        payload = json.loads(await request.body())
        data = payload.get("data") or []
        if int(payload.get("count", len(data))) != len(data):
            return JSONResponse({"code": 400, "message": "count disagrees"}, status_code=400)
        fetched_at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        rows = [report_row(item, fetched_at, next(counter)) for item in data]
        try:
            await run_in_threadpool(store, rows)
        except Exception:
            return JSONResponse({"code": 503, "message": "not stored"}, status_code=503)
        return JSONResponse({"code": 0, "message": "ok"})

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from airflow_provider_sms.receiver.__main__ import GRACEFUL_SHUTDOWN_SECONDS

    parser = argparse.ArgumentParser(prog="python -m benchmarks.receiver_baseline", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--table", required=True)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sqlite", metavar="FILE")
    where.add_argument("--postgres", metavar="URI")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    connect = postgres_connect(args.postgres) if args.postgres else sqlite_connect(args.sqlite)
    app = create_app(connect, args.table, args.secret, postgres=bool(args.postgres))
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        proxy_headers=False,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
