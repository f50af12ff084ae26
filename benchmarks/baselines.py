"""The hand-written baselines: the least plain ``requests`` / ``sqlite3`` code that does the same work.

Sends: every payload is built before the clock starts, then posted in order on one
``requests.Session`` (token vendors fetch their token once, inside the timed part, as the provider
does). Each reply is checked for the vendor's success code, so a baseline that "wins" by failing is
caught. ``record`` optionally writes each accepted request's numbers with one ``executemany`` and a
commit before the next request, which is the durable record the provider keeps for exactly-once.

Reports: pull the paasw_v2 queue until it is empty, then insert every row with one ``executemany``
in one transaction.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import requests
import urllib3

# cloud_mas: the simulator's certificate is self-signed and unverified, as the vendor instructs
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

#: numbers per request, as each vendor's document caps them (paasw_v1: 1,500 characters of numbers)
PER_REQUEST = {"paasw_v2": 1000, "paasw_v1": 125, "intl": 1000, "account_md5": 3000, "cloud_mas": 5000}
CONTENT = "hello"
SIGNATURE = "Bench"


def numbers(vendor: str, count: int) -> list[str]:
    """``count`` distinct valid numbers in the form the vendor takes (intl: with country code)."""
    prefix = "86" if vendor == "intl" else ""
    return [f"{prefix}138{i:08d}" for i in range(count)]


@dataclass
class Prepared:
    """Payloads ready to post; ``token_call`` fetches the token for vendors that need one."""

    method: str
    url: str
    payloads: list[dict[str, Any]]
    chunks: list[list[str]]
    encode: Callable[[dict[str, Any], str | None], dict[str, Any]]
    accepted: Callable[[requests.Response], str]
    token_call: Callable[[requests.Session], str] | None = None
    verify: bool = True


def prepare_send(vendor: str, connection: dict[str, Any], mobiles: Sequence[str]) -> Prepared:
    """Everything a baseline send needs, built before timing starts."""
    host = connection["host"]
    login, secret = connection["login"], connection["password"]
    size = PER_REQUEST[vendor]
    chunks = [list(mobiles[i : i + size]) for i in range(0, len(mobiles), size)]
    signed = f"【{SIGNATURE}】{CONTENT}"

    if vendor == "paasw_v2":

        def token_v2(session: requests.Session) -> str:
            reply = session.post(f"{host}/message/token", json={"appId": login, "secret": secret}).json()
            return str(reply["data"]["token"])

        def ok_v2(response: requests.Response) -> str:
            reply = response.json()
            assert reply["code"] == 0, reply
            return str(reply["data"]["batchId"])

        return Prepared(
            "POST",
            f"{host}/message/send",
            [{"mobile": ",".join(c), "msg": signed, "productId": "2", "time": ""} for c in chunks],
            chunks,
            lambda payload, token: {"json": {"token": token, **payload}},
            ok_v2,
            token_v2,
        )
    if vendor == "paasw_v1":

        def token_v1(session: requests.Session) -> str:
            reply = session.get(f"{host}/api/token", params={"appId": login, "secret": secret}).json()
            return str(reply["token"])

        def ok_v1(response: requests.Response) -> str:
            reply = response.json()
            assert str(reply["code"]) == "10000", reply
            return str(reply["bizId"])

        return Prepared(
            "POST",
            f"{host}/sms/send",
            [{"phoneNumbers": ",".join(c), "sign": SIGNATURE, "content": signed} for c in chunks],
            chunks,
            lambda payload, token: {"data": {"token": token, **payload}},
            ok_v1,
            token_v1,
        )
    if vendor == "intl":
        headers = {
            "appKey": login,
            "appSecret": hashlib.md5(secret.encode()).hexdigest().upper(),
            "Content-Type": "application/json;charset=utf-8",
        }
        bodies = [json.dumps({"mobile": ",".join(c), "content": signed}, ensure_ascii=False).encode() for c in chunks]

        def ok_intl(response: requests.Response) -> str:
            reply = response.json()
            assert str(reply["code"]) == "0", reply
            return str(reply["data"]["msgId"])

        return Prepared(
            "POST",
            f"{host}/api/v1/international/sms/send",
            [{"body": body} for body in bodies],
            chunks,
            lambda payload, token: {"data": payload["body"], "headers": headers},
            ok_intl,
        )
    if vendor == "account_md5":
        pwd = hashlib.md5(secret.encode()).hexdigest()

        def ok_md5(response: requests.Response) -> str:
            reply = response.json()
            assert str(reply["code"]) == "00", reply
            return str(reply["data"]["taskId"])

        return Prepared(
            "POST",
            f"{host}/api/v1/send",
            [
                {"account": login, "pwd": pwd, "mobiles": ",".join(c), "content": signed, "taskId": uuid.uuid4().hex}
                for c in chunks
            ],
            chunks,
            lambda payload, token: {"data": payload},
            ok_md5,
        )
    if vendor == "cloud_mas":
        extra = connection.get("extra") or {}
        ec_name, sign = extra["ec_name"], extra["sign"]

        def body(mobiles: str) -> bytes:
            mac = hashlib.md5(f"{ec_name}{login}{secret}{mobiles}{CONTENT}{sign}".encode()).hexdigest()
            fields = {
                "ecName": ec_name,
                "apId": login,
                "mobiles": mobiles,
                "content": CONTENT,
                "sign": sign,
                "addSerial": "",
                "mac": mac,
            }
            return base64.b64encode(json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode())

        def ok_mas(response: requests.Response) -> str:
            reply = response.json()
            assert reply["rspcod"] == "success", reply
            return str(reply["msgGroup"])  # the real spelling; the document says mgsGroup

        return Prepared(
            "POST",
            f"{host}/sms/submit",
            [{"body": body(",".join(c))} for c in chunks],
            chunks,
            lambda payload, token: {
                "data": payload["body"],
                "headers": {"Content-Type": "application/json;charset=utf-8"},
            },
            ok_mas,
            verify=False,
        )
    raise ValueError(f"unknown vendor {vendor!r}")


_REQUESTS_TABLE = """CREATE TABLE {name} (idempotency_key TEXT PRIMARY KEY, vendor TEXT NOT NULL,
    batch_id TEXT, state TEXT NOT NULL, total BIGINT NOT NULL, mobiles TEXT NOT NULL, created_at TEXT NOT NULL)"""


def _request_row(vendor: str, batch_id: str, mobiles: Sequence[str]) -> tuple[Any, ...]:
    """The row both recorders commit for one accepted request."""
    key = hashlib.sha256(f"{vendor}:{batch_id}".encode()).hexdigest()
    now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    return (key, vendor, batch_id, len(mobiles), json.dumps(list(mobiles)), now)


class SentRecorder:
    """The least durable record exactly-once needs, in plain sqlite3, before the next request goes out.

    One row per accepted request (key, batch id, state, the numbers as a JSON list), committed per
    request in the same WAL mode as the store: what the provider's store writes, without its checks.
    """

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute(_REQUESTS_TABLE.format(name="requests"))

    def record(self, vendor: str, batch_id: str, mobiles: Sequence[str]) -> None:
        self.db.execute(
            "INSERT INTO requests VALUES (?, ?, ?, 'accepted', ?, ?, ?)", _request_row(vendor, batch_id, mobiles)
        )

    def close(self) -> None:
        self.db.close()


class PostgresSentRecorder:
    """The same record in PostgreSQL with plain psycopg: one INSERT and a (durable) commit per request."""

    def __init__(self, uri: str, table: str) -> None:
        import psycopg

        self.table = table
        self.db = psycopg.connect(uri)
        self.db.execute(_REQUESTS_TABLE.format(name=table))
        self.db.commit()

    def record(self, vendor: str, batch_id: str, mobiles: Sequence[str]) -> None:
        self.db.execute(
            f"INSERT INTO {self.table} VALUES (%s, %s, %s, 'accepted', %s, %s, %s)",
            _request_row(vendor, batch_id, mobiles),
        )
        self.db.commit()

    def close(self) -> None:
        self.db.execute(f"DROP TABLE {self.table}")
        self.db.commit()
        self.db.close()


def post_all(prepared: Prepared, vendor: str, recorder: SentRecorder | PostgresSentRecorder | None = None) -> int:
    """Post every prepared payload in order on one session; returns the numbers accepted."""
    accepted = 0
    with requests.Session() as session:
        session.verify = prepared.verify
        token = prepared.token_call(session) if prepared.token_call else None
        for payload, chunk in zip(prepared.payloads, prepared.chunks, strict=True):
            response = session.request(
                prepared.method, prepared.url, verify=prepared.verify, **prepared.encode(payload, token)
            )
            batch_id = prepared.accepted(response)
            if recorder is not None:
                recorder.record(vendor, batch_id, chunk)
            accepted += len(chunk)
    return accepted


def post_concurrently(prepared: Prepared, concurrency: int) -> int:
    """The same posts from ``concurrency`` threads, each with its own session (for the latency case)."""
    import threading

    local = threading.local()
    sessions: list[requests.Session] = []

    def session() -> requests.Session:
        current = getattr(local, "session", None)
        if current is None:
            current = local.session = requests.Session()
            current.verify = prepared.verify
            sessions.append(current)
        return current

    with requests.Session() as first:
        first.verify = prepared.verify
        token = prepared.token_call(first) if prepared.token_call else None

    def one(index: int) -> int:
        response = session().request(
            prepared.method, prepared.url, verify=prepared.verify, **prepared.encode(prepared.payloads[index], token)
        )
        prepared.accepted(response)
        return len(prepared.chunks[index])

    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            return sum(pool.map(one, range(len(prepared.payloads))))
    finally:
        for s in sessions:
            s.close()


# ------------------------------------------------------------------------------------------------ reports


def pull_report_rows(connection: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Drain the paasw_v2 report queue into rows holding what the store keeps of a report.

    Status, code, description, time in UTC, the raw record as JSON, connection, fetch time, a
    sequence number; all held in memory until the one insert at the end.
    """
    from zoneinfo import ZoneInfo

    host = connection["host"]
    vendor_zone = ZoneInfo("Asia/Shanghai")
    times: dict[str, str] = {}  # vendor time text -> ISO UTC; a page shares a few timestamps
    rows: list[tuple[Any, ...]] = []
    with requests.Session() as session:
        token = session.post(
            f"{host}/message/token", json={"appId": connection["login"], "secret": connection["password"]}
        ).json()["data"]["token"]
        while True:
            reply = session.post(f"{host}/message/deliver", json={"token": token}).json()
            assert reply["code"] == 0, reply
            data = reply.get("data") or []
            if not data:
                break
            fetched_at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
            for item in data:
                code, text = item["chnRptCode"], item["chnRptDate"]
                at = times.get(text)
                if at is None:
                    naive = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
                    at = times[text] = naive.replace(tzinfo=vendor_zone).astimezone(timezone.utc).isoformat()
                delivered = code == "DELIVRD"
                rows.append(
                    (
                        "paasw_v2",
                        str(item["batchId"]),
                        item["mobile"],
                        "delivered" if delivered else "failed",
                        code,
                        "delivered" if delivered else f"operator code {code}",
                        at,
                        json.dumps(item, ensure_ascii=False, separators=(",", ":")),
                        "sms_paasw_v2",
                        fetched_at,
                        len(rows) + 1,
                    )
                )
    return rows


_REPORTS_TABLE = """CREATE TABLE {name} (vendor TEXT NOT NULL, batch_id TEXT NOT NULL,
    mobile TEXT NOT NULL, status TEXT NOT NULL, code TEXT NOT NULL, description TEXT NOT NULL,
    reported_at TEXT, raw TEXT, conn_id TEXT NOT NULL, fetched_at TEXT NOT NULL, seq BIGINT NOT NULL,
    PRIMARY KEY (vendor, batch_id, mobile))"""


def pull_reports_into_sqlite(connection: dict[str, Any], path: str) -> int:
    """Drain the queue, then insert every row with one executemany in one transaction (same key as the store)."""
    rows = pull_report_rows(connection)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(_REPORTS_TABLE.format(name="reports"))
        db.execute("CREATE UNIQUE INDEX reports_seq ON reports (seq)")
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT OR REPLACE INTO reports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    finally:
        db.close()
    return len(rows)


def pull_reports_into_postgres(connection: dict[str, Any], uri: str, table: str) -> int:
    """The same into PostgreSQL with plain psycopg: one (pipelined) executemany in one transaction."""
    import psycopg

    rows = pull_report_rows(connection)
    with psycopg.connect(uri) as db:
        db.execute(_REPORTS_TABLE.format(name=table))
        db.execute(f"CREATE UNIQUE INDEX {table}_seq ON {table} (seq)")
        db.commit()
        try:
            with db.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (vendor, batch_id, mobile) DO NOTHING",
                    rows,
                )
            db.commit()
        finally:
            db.execute(f"DROP TABLE {table}")
            db.commit()
    return len(rows)
