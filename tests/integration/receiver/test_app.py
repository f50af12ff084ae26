"""The push receiver over real HTTP: uvicorn on a free port, real SQLite (and PostgreSQL when
``SMS_TEST_POSTGRES_URI`` is set), and the simulator pushing to it as the vendors would.

The receiver runs in this process (a uvicorn thread), so a test can make the store fail by patching
``SmsStore``; the standalone module, the ``airflow plugins`` listing and Airflow's API server app are
run in subprocesses with a throwaway ``AIRFLOW_HOME``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_sms.hooks import get_sms_hook
from airflow_provider_sms.receiver.app import create_standalone_app
from airflow_provider_sms.records import DELIVERED, FAILED
from airflow_provider_sms.simulator import GatewaySimulator
from airflow_provider_sms.store import SmsStore, TaskIdentity, drop_statements

pytestmark = pytest.mark.integration

SECRET = "cb-secret-" + "7f3a9c2e51d84b06"
PG_CONN_ID = "sms_receiver_test_pg"
TASK = TaskIdentity(dag_id="dag", run_id="run", task_id="send")
OK_ANSWERS = {
    "paasw_v2": {"code": 0, "message": "ok"},
    "paasw_v1": {"code": "10000", "msg": "请求成功"},
    "intl": {"code": 0, "msg": "ok"},
    "account_md5": {"code": "00", "message": "成功"},
}
PUSH_VENDORS = tuple(OK_ANSWERS)
INBOUND_VENDORS = ("paasw_v2", "paasw_v1", "account_md5")
MOBILES = {
    "paasw_v2": ["13800138000", "13912345678", "15011112222"],
    "paasw_v1": ["13800138001", "13912345679", "15011112223"],
    "intl": ["8613800138000", "2348031000010", "447400123456"],  # not 447700900123: a drama range, no number
    "account_md5": ["13500009831", "13600000014", "18912340000"],
}


# ---------------------------------------------------------------------------------------------- servers


@dataclass
class Receiver:
    url: str
    app: Any

    def close_stores(self) -> None:
        self.app.state.receiver.state.stores.close()


def start_receiver(**settings: Any) -> tuple[Receiver, Callable[[], None]]:
    """The standalone app under uvicorn on a free port, in a thread; returns it and a stop function."""
    import uvicorn

    # connections are looked up on every push here: tests change a connection's extras between pushes
    app = create_standalone_app(**{"connection_cache_seconds": 0, **settings})
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=True, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
        sock.close()

    return Receiver(f"http://127.0.0.1:{port}", app), stop


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running, stop = start_receiver()
    yield running
    running.close_stores()
    stop()


@pytest.fixture(scope="module")
def small_receiver() -> Iterator[Receiver]:
    """A receiver that takes at most 1000 bytes, for the size checks."""
    running, stop = start_receiver(max_body_bytes=1000)
    yield running
    running.close_stores()
    stop()


# ---------------------------------------------------------------------------------------------- stores


def postgres_uri() -> str:
    uri = os.environ.get("SMS_TEST_POSTGRES_URI", "")
    if uri:
        return uri
    if os.environ.get("SMS_REQUIRE_POSTGRES") == "1":
        pytest.fail("SMS_REQUIRE_POSTGRES=1 but SMS_TEST_POSTGRES_URI is not set", pytrace=False)
    pytest.skip("PostgreSQL tests need SMS_TEST_POSTGRES_URI (bash .ci/postgres.sh prints it)")


@dataclass
class Backend:
    """Where the receiver writes (connection extras that select it) and a store the test reads it with."""

    name: str
    extras: dict[str, str]
    store: SmsStore

    def reports(self, vendor: str | None = None) -> list[dict[str, Any]]:
        return [row for page in self.store.iter_reports(vendor=vendor) for row in page]

    def inbound(self, vendor: str | None = None) -> list[dict[str, Any]]:
        return [row for page in self.store.iter_inbound(vendor=vendor) for row in page]

    def record_send(self, conn_id: str, receipts: list[Any]) -> None:
        for i, receipt in enumerate(receipts):
            self.store.record_accepted(f"{conn_id}-{receipt.batch_id}-{i}", receipt, conn_id=conn_id, task=TASK)


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> Iterator[Backend]:
    """sqlite: the receiver's default, the embedded store of this test's AIRFLOW_HOME.
    postgres: a PostgreSQL connection chosen by the ``callback_store_conn_id`` extra, with its own prefix."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    if request.param == "sqlite":
        db = Backend("sqlite", {}, SmsStore())
    else:
        uri = postgres_uri()
        monkeypatch.setenv(f"AIRFLOW_CONN_{PG_CONN_ID.upper()}", uri)
        prefix = f"r{uuid.uuid4().hex[:12]}_"
        extras = {"callback_store_conn_id": PG_CONN_ID, "callback_store_table_prefix": prefix}
        db = Backend("postgres", extras, SmsStore(PG_CONN_ID, table_prefix=prefix))
    try:
        yield db
    finally:
        db.store.close()
        receiver.close_stores()
        if request.param == "postgres":
            import psycopg

            with psycopg.connect(postgres_uri(), autocommit=True) as conn:
                for statement in drop_statements(db.extras["callback_store_table_prefix"]):
                    conn.execute(statement)


@pytest.fixture
def sqlite_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> Iterator[Path]:
    """This test's AIRFLOW_HOME, whose sms_store.db is where the receiver writes by default."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    yield tmp_path
    receiver.close_stores()


def stored_rows(home: Path, table: str) -> int:
    """Rows of an embedded-store table; 0 when the file or the table does not exist (nothing touched)."""
    path = home / "sms_store.db"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (f"sms_{table}",)).fetchone():
            return 0
        return int(conn.execute(f"SELECT COUNT(*) FROM sms_{table}").fetchone()[0])


# ---------------------------------------------------------------------------------------------- connections


def set_connections(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, extras: dict[str, Any] | None = None, **per_vendor: Any
) -> dict[str, str]:
    """``AIRFLOW_CONN_SMS_<VENDOR>`` for the simulated accounts, with push enabled (``callback_secret``)."""
    conn_ids = {}
    for vendor in (*PUSH_VENDORS, "cloud_mas"):
        conn_id = f"sms_{vendor}"
        vendor_extras = {"callback_secret": SECRET, **(extras or {}), **per_vendor.get(vendor, {})}
        vendor_extras = {k: v for k, v in vendor_extras.items() if v is not None}
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}", sim.connection_json(vendor, retry_wait=0.01, **vendor_extras)
        )
        conn_ids[vendor] = conn_id
    return conn_ids


@pytest.fixture
def conns(sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, backend: Backend) -> dict[str, str]:
    # intl authenticates by its headers; its connection has no callback_secret unless a test adds one
    return set_connections(sms_simulator, monkeypatch, backend.extras, intl={"callback_secret": None})


@pytest.fixture
def plain_conns(sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, sqlite_home: Path) -> dict[str, str]:
    return set_connections(sms_simulator, monkeypatch, intl={"callback_secret": None})


def intl_headers(sim: GatewaySimulator, secret: str | None = None) -> dict[str, str]:
    account = sim.gateway.account("intl")
    digest = hashlib.md5((secret or account.secret).encode()).hexdigest().upper()
    return {"appKey": account.login, "appSecret": digest}


def post(
    receiver: Receiver,
    conn_id: str,
    kind: str,
    body: Any = None,
    *,
    secret: str | None = SECRET,
    headers: dict[str, str] | None = None,
    data: Any = None,
) -> requests.Response:
    """A real POST to the receiver; ``body`` goes as JSON, ``data`` as given."""
    headers = dict(headers or {})
    if body is not None:
        try:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:  # text UTF-8 cannot carry goes as a \u escape, as a vendor would send it
            data = json.dumps(body).encode("ascii")
        headers.setdefault("Content-Type", "application/json;charset=utf-8")
    params = {"secret": secret} if secret is not None else None
    return requests.post(
        f"{receiver.url}/sms/callbacks/{conn_id}/{kind}", params=params, data=data, headers=headers, timeout=30
    )


# ---------------------------------------------------------------------------------------------- vendor bodies


def report_bodies(vendor: str, batch_id: str, mobiles: list[str], delivered: bool = True) -> list[Any]:
    """What each vendor POSTs for these reports: one body (lists) or one body per report."""
    if vendor == "paasw_v2":
        code = "DELIVRD" if delivered else "DB:0141"
        data = [
            {"batchId": batch_id, "mobile": m, "chnRptDate": "2024-05-01 16:00:00", "chnRptCode": code} for m in mobiles
        ]
        return [{"count": len(data), "data": data}]
    if vendor == "paasw_v1":
        return [
            [
                {
                    "phone_number": m,
                    "send_time": "2024-05-01 15:59:58",
                    "report_time": "2024-05-01 16:00:00",
                    "success": delivered,
                    "code": "10000" if delivered else "4",
                    "message": "请求成功" if delivered else "失败",
                    "sms_size": "1",
                    "biz_id": batch_id,
                }
                for m in mobiles
            ]
        ]
    if vendor == "intl":
        return [
            {
                "mobile": m,
                "msgId": batch_id,
                "timestamp": "202405011600",
                "status": 0 if delivered else 1,
                "desc": "",
                "errorCode": "DELIVRD" if delivered else "UNDELIV",
            }
            for m in mobiles
        ]
    return [
        {
            "sendId": batch_id,
            "mobile": m,
            "times": "2024-05-01 16:00:00",
            "status": "DELIVRD" if delivered else "MBBLACK",
        }
        for m in mobiles
    ]


def inbound_bodies(vendor: str, messages: list[tuple[str, str]]) -> list[Any]:
    if vendor == "paasw_v2":
        data = [{"mobile": m, "extNo": "8866", "content": c, "replyDate": "2024-05-01 16:00:00"} for m, c in messages]
        return [{"count": len(data), "data": data}]
    if vendor == "paasw_v1":
        return [
            [
                {"phone_number": m, "send_time": "2024-05-01 16:00:00", "content": c, "sign": "签名", "sequence_id": i}
                for i, (m, c) in enumerate(messages)
            ]
        ]
    return [{"mobile": m, "content": c, "times": "2024-05-01 16:00:00", "extNo": "10"} for m, c in messages]


def auth_for(vendor: str, sim: GatewaySimulator) -> dict[str, Any]:
    return {"headers": intl_headers(sim), "secret": None} if vendor == "intl" else {}


# ---------------------------------------------------------------------------------------------- every vendor


@pytest.mark.parametrize("vendor", PUSH_VENDORS)
def test_pushed_reports_are_stored_and_answered_as_each_vendor_asks(
    vendor: str, receiver: Receiver, sms_simulator: GatewaySimulator, conns: dict[str, str], backend: Backend
) -> None:
    batch_id = "39036632588910887018"
    mobiles = MOBILES[vendor]
    for delivered, part in ((True, mobiles[:2]), (False, mobiles[2:])):
        for body in report_bodies(vendor, batch_id, part, delivered):
            response = post(receiver, conns[vendor], "reports", body, **auth_for(vendor, sms_simulator))
            assert response.status_code == 200, response.text
            assert response.json() == OK_ANSWERS[vendor]

    rows = {row["mobile"]: row for row in backend.reports(vendor)}
    assert set(rows) == set(mobiles)
    for mobile in mobiles:
        row = rows[mobile]
        assert row["batch_id"] == batch_id
        assert row["conn_id"] == conns[vendor]
        assert row["status"] == (DELIVERED if mobile in mobiles[:2] else FAILED)
        assert row["reported_at"] == "2024-05-01T08:00:00.000000+00:00"  # 16:00 in Asia/Shanghai


@pytest.mark.parametrize("vendor", PUSH_VENDORS)
@pytest.mark.parametrize("bad", ["\ud800", "\x00"], ids=["surrogate", "nul"])
def test_a_pushed_report_the_store_cannot_hold_is_quarantined_the_rest_stored(
    vendor: str, bad: str, receiver: Receiver, sms_simulator: GatewaySimulator, conns: dict[str, str], backend: Backend
) -> None:
    """A lone surrogate (no UTF-8 database takes it) or NUL (PostgreSQL's text refuses it) in a pushed field."""
    mobiles = MOBILES[vendor][:2]
    bodies = report_bodies(vendor, "39036632588910887018", mobiles)
    if vendor in ("paasw_v2", "paasw_v1"):  # one body holding the list
        [body] = bodies
        records = body["data"] if vendor == "paasw_v2" else body
    else:  # one body per report
        records = bodies
    records[-1]["mobile" if vendor != "paasw_v1" else "phone_number"] += bad  # the second report's number
    for body in bodies:
        response = post(receiver, conns[vendor], "reports", body, **auth_for(vendor, sms_simulator))
        assert response.status_code == 200, response.text
    held = bad == "\x00" and backend.name == "sqlite"
    stored = {row["mobile"] for row in backend.reports(vendor)}
    assert mobiles[0] in stored and len(stored) == (2 if held else 1)
    kept = backend.store.quarantined(conn_id=conns[vendor])
    assert len(kept) == (0 if held else 1)
    if kept:
        assert kept[0]["source"] == "push" and "cannot hold" in kept[0]["reason"]


@pytest.mark.parametrize("vendor", INBOUND_VENDORS)
def test_pushed_inbound_messages_are_stored(
    vendor: str, receiver: Receiver, conns: dict[str, str], backend: Backend
) -> None:
    messages = [("13800138000", "收到，谢谢"), ("13912345678", "TD")]
    for body in inbound_bodies(vendor, messages):
        response = post(receiver, conns[vendor], "inbound", body)
        assert response.status_code == 200, response.text
        assert response.json() == OK_ANSWERS[vendor]
    rows = backend.inbound(vendor)
    assert sorted((r["mobile"], r["content"]) for r in rows) == sorted(messages)
    assert {r["conn_id"] for r in rows} == {conns[vendor]}
    assert {r["received_at"] for r in rows} == {"2024-05-01T08:00:00.000000+00:00"}


@pytest.mark.parametrize("vendor", PUSH_VENDORS)
def test_a_repeated_push_is_acknowledged_and_not_duplicated(
    vendor: str, receiver: Receiver, sms_simulator: GatewaySimulator, conns: dict[str, str], backend: Backend
) -> None:
    bodies = report_bodies(vendor, "77", MOBILES[vendor][:2])
    for _ in range(3):
        for body in bodies:
            response = post(receiver, conns[vendor], "reports", body, **auth_for(vendor, sms_simulator))
            assert response.status_code == 200 and response.json() == OK_ANSWERS[vendor]
    assert len(backend.reports(vendor)) == 2
    if vendor in INBOUND_VENDORS:
        for _ in range(2):
            for body in inbound_bodies(vendor, [("13800138000", "hello")]):
                assert post(receiver, conns[vendor], "inbound", body).status_code == 200
        assert len(backend.inbound(vendor)) == 1


def test_account_md5_also_takes_form_posts(receiver: Receiver, plain_conns: dict[str, str], sqlite_home: Path) -> None:
    report = {"sendId": "task-1", "mobile": "135****9831", "times": "2024-05-01 16:00:00", "status": "DELIVRD"}
    response = post(receiver, plain_conns["account_md5"], "reports", data=report)  # requests form-encodes a dict
    assert response.status_code == 200 and response.json() == OK_ANSWERS["account_md5"]
    mo = {"mobile": "135****9831", "content": "好的", "times": "2024-05-01 16:00:00", "extNo": "10"}
    assert post(receiver, plain_conns["account_md5"], "inbound", data=mo).status_code == 200
    assert stored_rows(sqlite_home, "delivery_reports") == 1
    assert stored_rows(sqlite_home, "inbound_messages") == 1
    # the other vendors push JSON only
    response = post(receiver, plain_conns["paasw_v1"], "reports", data={"phone_number": "13800138000"})
    assert response.status_code == 415


# ---------------------------------------------------------------------------------------------- refusals


def test_wrong_or_missing_secret_is_401_and_stores_nothing(
    receiver: Receiver, plain_conns: dict[str, str], sqlite_home: Path
) -> None:
    for vendor in ("paasw_v2", "paasw_v1", "account_md5"):
        [body] = report_bodies(vendor, "1", ["13800138000"])[:1]
        for secret in ("wrong", None, SECRET[:-1], SECRET + "x", ""):
            response = post(receiver, plain_conns[vendor], "reports", body, secret=secret)
            assert response.status_code == 401, (vendor, secret, response.text)
    assert post(receiver, "sms_paasw_v2", "reports", secret="wrong", data=b"{not json").status_code == 401
    assert stored_rows(sqlite_home, "delivery_reports") == 0


def test_intl_is_checked_against_appkey_and_md5_appsecret_headers(
    receiver: Receiver, sms_simulator: GatewaySimulator, plain_conns: dict[str, str], sqlite_home: Path
) -> None:
    conn_id = plain_conns["intl"]
    [body] = report_bodies("intl", "240924170907169917", ["8613800138000"])
    good = intl_headers(sms_simulator)
    refusals = [
        {},
        {"appKey": good["appKey"]},
        {**good, "appKey": "10003"},
        {**good, "appSecret": intl_headers(sms_simulator, "wrong")["appSecret"]},
        {**good, "appSecret": sms_simulator.gateway.account("intl").secret},  # the raw secret is not its MD5
    ]
    for headers in refusals:
        response = post(receiver, conn_id, "reports", body, headers=headers, secret=None)
        assert response.status_code == 401
        assert response.json()["code"] == 1003
    assert stored_rows(sqlite_home, "delivery_reports") == 0
    # the document says upper case; a lower-case digest is the same credential
    lower = {**good, "appSecret": good["appSecret"].lower()}
    assert post(receiver, conn_id, "reports", body, headers=lower, secret=None).json() == OK_ANSWERS["intl"]


def test_intl_with_a_callback_secret_needs_both(
    receiver: Receiver, sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, sqlite_home: Path
) -> None:
    conns = set_connections(sms_simulator, monkeypatch)  # intl gets callback_secret too
    [body] = report_bodies("intl", "1", ["8613800138000"])
    headers = intl_headers(sms_simulator)
    assert post(receiver, conns["intl"], "reports", body, headers=headers, secret=None).status_code == 401
    assert post(receiver, conns["intl"], "reports", body, secret=SECRET).status_code == 401
    assert post(receiver, conns["intl"], "reports", body, headers=headers, secret=SECRET).status_code == 200


def test_ip_allow_list(
    receiver: Receiver, sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, sqlite_home: Path
) -> None:
    [body] = report_bodies("paasw_v2", "1", ["13800138000"])
    cases = [
        ("10.0.0.0/8, 192.168.1.7", 403),
        ("10.0.0.0/8, 127.0.0.0/30", 200),
        ("127.0.0.1", 200),
        ("::1, 127.0.0.2", 403),
        ("127.0.0.1, not-an-ip", 403),  # a broken list refuses everyone rather than no one
    ]
    for allow, status in cases:
        conns = set_connections(sms_simulator, monkeypatch, {"callback_allow_ips": allow})
        response = post(receiver, conns["paasw_v2"], "reports", body)
        assert response.status_code == status, (allow, response.text)
    # the allow-list is checked before the secret: a wrong secret from an allowed address is still 401
    assert post(receiver, conns["paasw_v2"], "reports", body, secret="x").status_code == 403
    assert stored_rows(sqlite_home, "delivery_reports") == 1


def test_unknown_or_unsuitable_connections_are_404(
    receiver: Receiver, sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, sqlite_home: Path
) -> None:
    conns = set_connections(sms_simulator, monkeypatch, paasw_v1={"callback_secret": None})
    monkeypatch.setenv("AIRFLOW_CONN_SMS_NOT_SMS", json.dumps({"conn_type": "sqlite", "host": "/tmp/x.db"}))
    body = {"count": 0, "data": []}
    not_found = [
        ("sms_no_such_conn", "reports"),
        ("sms_not_sms", "reports"),  # exists, but is no SMS connection
        (conns["cloud_mas"], "reports"),  # cloud_mas has no push
        (conns["intl"], "inbound"),  # intl pushes reports only
        (conns["paasw_v1"], "reports"),  # push not enabled: no callback_secret
        (conns["paasw_v2"], "balance"),
        ("bad id!", "reports"),
    ]
    for conn_id, kind in not_found:
        response = post(receiver, conn_id, kind, body)
        assert response.status_code == 404, (conn_id, kind)
        assert response.json() == {"detail": "Not Found"}  # the same answer as an unknown path: nothing revealed
    assert requests.get(f"{receiver.url}/sms/callbacks/{conns['paasw_v2']}/reports", timeout=10).status_code == 405
    assert requests.get(f"{receiver.url}/sms/health", timeout=10).json() == {"status": "ok"}
    assert stored_rows(sqlite_home, "delivery_reports") == 0


@pytest.mark.parametrize(
    ("vendor", "data", "content_type", "status"),
    [
        ("paasw_v2", b'{"count": 1, "data": [{"batchId": "1", ', "application/json", 400),
        ("paasw_v2", b"", "application/json", 400),
        ("paasw_v2", b'"just a string"', "application/json", 400),
        ("paasw_v2", b'{"count": 2}', "application/json", 400),  # announces records, carries none
        ("paasw_v2", b'{"count": 1, "data": "x"}', "application/json", 400),
        ("paasw_v2", b"[1, 2]", "application/json", 400),
        ("paasw_v2", b'{"count": 1, "data": []}', "application/xml", 415),
        ("paasw_v1", b"\xff\xfe{}", "application/json", 400),  # not UTF-8
        ("account_md5", b"sendId=1&&&mobile", "application/x-www-form-urlencoded", 400),
    ],
)
def test_malformed_bodies_are_4xx_and_store_nothing(
    vendor: str,
    data: bytes,
    content_type: str,
    status: int,
    receiver: Receiver,
    sms_simulator: GatewaySimulator,
    plain_conns: dict[str, str],
    sqlite_home: Path,
) -> None:
    auth = auth_for(vendor, sms_simulator)
    headers = {**auth.pop("headers", {}), "Content-Type": content_type}
    response = post(receiver, plain_conns[vendor], "reports", data=data, headers=headers, **auth)
    assert response.status_code == status, response.text
    if vendor == "intl":
        assert response.json()["code"] == 1001  # intl's own ParamError
    assert stored_rows(sqlite_home, "delivery_reports") == 0


#: each vendor's refusal of a 400, in its own reply shape
REFUSED_400 = {
    "paasw_v2": ("code", 400),
    "paasw_v1": ("code", "400"),
    "intl": ("code", 1001),
    "account_md5": ("code", "400"),
}


def assert_refused_400(vendor: str, response: requests.Response, problem: str) -> None:
    assert response.status_code == 400, response.text
    key, code = REFUSED_400[vendor]
    body = response.json()
    assert body[key] == code, body
    assert problem in body["msg" if vendor in ("paasw_v1", "intl") else "message"], body


@pytest.mark.parametrize("vendor", PUSH_VENDORS)
@pytest.mark.parametrize(
    "data",
    [
        b"[" * 2000 + b"]" * 2000,
        b'{"a": ' * 2000 + b"1" + b"}" * 2000,
        b'{"count": 1, "data": [' + b"[" * 40 + b"]" * 40 + b"]}",
    ],
    ids=["lists-2000", "objects-2000", "record-40"],
)
def test_a_deeply_nested_body_is_refused_in_the_vendors_shape(
    vendor: str,
    data: bytes,
    receiver: Receiver,
    sms_simulator: GatewaySimulator,
    plain_conns: dict[str, str],
    sqlite_home: Path,
) -> None:
    auth = auth_for(vendor, sms_simulator)
    headers = {**auth.pop("headers", {}), "Content-Type": "application/json"}
    response = post(receiver, plain_conns[vendor], "reports", data=data, headers=headers, **auth)
    assert_refused_400(vendor, response, "nests more than 32 levels")
    assert stored_rows(sqlite_home, "delivery_reports") == 0
    # the receiver still serves
    [body] = report_bodies(vendor, "1", MOBILES[vendor][:1])[:1]
    assert post(receiver, plain_conns[vendor], "reports", body, **auth_for(vendor, sms_simulator)).status_code == 200


@pytest.mark.parametrize("kind", ["reports", "inbound"])
@pytest.mark.parametrize(
    ("count", "records", "problem"),
    [
        (5, 0, "announces 5 records but 'data' carries 0"),
        (1, 2, "announces 1 records but 'data' carries 2"),
        (3, 2, "announces 3 records but 'data' carries 2"),
        ("2x", 2, "'count' should be a non-negative integer"),
        (-2, 2, "'count' should be a non-negative integer"),
    ],
)
def test_a_count_that_disagrees_with_the_data_is_refused(
    kind: str,
    count: Any,
    records: int,
    problem: str,
    receiver: Receiver,
    plain_conns: dict[str, str],
    sqlite_home: Path,
) -> None:
    """paasw_v2 is the vendor whose pushes carry a count (``{count, data: [...]}``)."""
    if kind == "reports":
        [body] = report_bodies("paasw_v2", "1", MOBILES["paasw_v2"][:records])
    else:
        [body] = inbound_bodies("paasw_v2", [(m, "hi") for m in MOBILES["paasw_v2"][:records]])
    body["count"] = count
    assert_refused_400("paasw_v2", post(receiver, plain_conns["paasw_v2"], kind, body), problem)
    assert stored_rows(sqlite_home, "delivery_reports") == stored_rows(sqlite_home, "inbound_messages") == 0
    body["count"] = records  # the same body with its true count is taken
    assert post(receiver, plain_conns["paasw_v2"], kind, body).status_code == 200


@pytest.mark.parametrize(
    ("vendor", "data"),
    [
        ("paasw_v2", b'{"count": 1, "data": [{"a": 1}]}'),  # a record without fields
        ("paasw_v1", b'[{"phone_number": "13800138000", "code": "10000"}]'),  # no biz_id
        ("intl", b'{"msgId": "1", "mobile": "86138", "status": 7, "timestamp": "202405011600"}'),
        ("intl", b'{"msgId": "1", "mobile": "86138", "status": 0, "timestamp": "2024-05-01"}'),
        ("account_md5", b'{"sendId": "1", "mobile": "135****9831"}'),  # no status
    ],
)
def test_a_malformed_record_is_quarantined_and_acknowledged(
    vendor: str,
    data: bytes,
    receiver: Receiver,
    sms_simulator: GatewaySimulator,
    plain_conns: dict[str, str],
    sqlite_home: Path,
) -> None:
    """Pushing it again could never make it parse: it is kept raw with the reason, and the vendor is answered."""
    auth = auth_for(vendor, sms_simulator)
    headers = {**auth.pop("headers", {}), "Content-Type": "application/json"}
    response = post(receiver, plain_conns[vendor], "reports", data=data, headers=headers, **auth)
    assert response.status_code == 200, response.text
    assert stored_rows(sqlite_home, "delivery_reports") == 0
    with SmsStore() as store:
        [kept] = store.quarantined(conn_id=plain_conns[vendor])
    assert kept["source"] == "push" and kept["kind"] == "reports" and kept["reason"]
    pushed = json.loads(data)
    assert kept["raw"] == (pushed["data"][0] if "data" in pushed else pushed[0] if isinstance(pushed, list) else pushed)


def test_one_bad_record_costs_only_itself(receiver: Receiver, plain_conns: dict[str, str], sqlite_home: Path) -> None:
    [body] = report_bodies("paasw_v2", "1", ["13800138000", "13912345678"])
    del body["data"][1]["batchId"]
    response = post(receiver, plain_conns["paasw_v2"], "reports", body)
    assert response.status_code == 200
    assert stored_rows(sqlite_home, "delivery_reports") == 1
    with SmsStore() as store:
        [kept] = store.quarantined(conn_id=plain_conns["paasw_v2"])
    assert "batchId" in kept["reason"] and kept["raw"]["mobile"] == "13912345678"


@pytest.mark.parametrize("vendor", PUSH_VENDORS)
@pytest.mark.parametrize("bad", [{"a": 1}, ["13800138000"], True, 1.5], ids=["object", "list", "bool", "float"])
def test_a_pushed_number_that_is_not_text_is_quarantined_never_stored_as_a_repr(
    vendor: str,
    bad: Any,
    receiver: Receiver,
    sms_simulator: GatewaySimulator,
    plain_conns: dict[str, str],
    sqlite_home: Path,
) -> None:
    mobiles = MOBILES[vendor][:2]
    bodies = report_bodies(vendor, "39036632588910887018", mobiles)
    if vendor in ("paasw_v2", "paasw_v1"):  # one body holding the list
        [body] = bodies
        records = body["data"] if vendor == "paasw_v2" else body
    else:  # one body per report
        records = bodies
    records[-1]["mobile" if vendor != "paasw_v1" else "phone_number"] = bad
    for body in bodies:
        response = post(receiver, plain_conns[vendor], "reports", body, **auth_for(vendor, sms_simulator))
        assert response.status_code == 200, response.text
    with SmsStore() as store:
        assert [row["mobile"] for page in store.iter_reports(vendor=vendor) for row in page] == mobiles[:1]
        [kept] = store.quarantined(conn_id=plain_conns[vendor])
    assert kept["source"] == "push" and "should be a string or an integer" in kept["reason"]


def test_oversized_bodies_are_413(small_receiver: Receiver, plain_conns: dict[str, str], sqlite_home: Path) -> None:
    [body] = report_bodies("paasw_v2", "1", [f"138{i:08d}" for i in range(40)])  # about 3.5 KB
    response = post(small_receiver, plain_conns["paasw_v2"], "reports", body)
    assert response.status_code == 413
    # without a Content-Length (chunked), the limit is applied while reading
    data = json.dumps(body).encode()
    chunks = (data[i : i + 256] for i in range(0, len(data), 256))
    headers = {"Content-Type": "application/json"}
    response = post(small_receiver, plain_conns["paasw_v2"], "reports", data=chunks, headers=headers)
    assert response.status_code == 413
    assert stored_rows(sqlite_home, "delivery_reports") == 0
    # under the limit, the same receiver takes it
    [small] = report_bodies("paasw_v2", "1", ["13800138000"])
    assert post(small_receiver, plain_conns["paasw_v2"], "reports", small).status_code == 200


def test_default_limit_is_one_mebibyte(receiver: Receiver, plain_conns: dict[str, str], sqlite_home: Path) -> None:
    [body] = report_bodies("paasw_v2", "1", ["13800138000"])
    body["padding"] = "x" * (1024 * 1024)
    assert post(receiver, plain_conns["paasw_v2"], "reports", body).status_code == 413
    body["padding"] = "x" * (1024 * 1024 - 300)
    assert post(receiver, plain_conns["paasw_v2"], "reports", body).status_code == 200


# ---------------------------------------------------------------------------------------------- failing stores


@pytest.fixture
def failing_store(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every save fails, as a full disk or a dropped database would; returns the calls made."""
    calls: list[int] = []

    def fail(
        self: SmsStore, records: Any, *, conn_id: str = "", journal_id: int | None = None, more: Any = None
    ) -> Any:
        calls.append(1)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(SmsStore, "save_reports", fail)
    monkeypatch.setattr(SmsStore, "save_inbound", fail)
    return calls


def test_a_failing_store_gets_each_vendors_push_again_answer(
    receiver: Receiver,
    sms_simulator: GatewaySimulator,
    plain_conns: dict[str, str],
    sqlite_home: Path,
    failing_store: list[int],
) -> None:
    expected = {"paasw_v2": (503, 503), "paasw_v1": (503, "503"), "intl": (200, 9999), "account_md5": (503, "503")}
    for vendor, (status, code) in expected.items():
        [body] = report_bodies(vendor, "1", MOBILES[vendor][:1])
        response = post(receiver, plain_conns[vendor], "reports", body, **auth_for(vendor, sms_simulator))
        assert (response.status_code, response.json()["code"]) == (status, code), vendor
    assert len(failing_store) == 4
    assert stored_rows(sqlite_home, "delivery_reports") == 0


def test_a_push_the_store_failed_to_take_is_journaled_when_the_vendor_will_not_push_it_again(
    receiver: Receiver,
    sms_simulator: GatewaySimulator,
    plain_conns: dict[str, str],
    sqlite_home: Path,
    failing_store: list[int],
) -> None:
    """A clean push is stored without a journal row; when the store fails, account_md5 (which never pushes
    again) gets its page journaled, for a later push or pull to store; a vendor that pushes again does not."""
    for vendor, journaled in (("account_md5", 1), ("paasw_v2", 0)):
        [body] = report_bodies(vendor, "1", MOBILES[vendor][:1])
        response = post(receiver, plain_conns[vendor], "reports", body, **auth_for(vendor, sms_simulator))
        assert response.status_code == 503, vendor
        with SmsStore() as store:
            assert len(store.open_journal(plain_conns[vendor], "reports")) == journaled, vendor


def test_a_store_that_cannot_be_opened_is_a_store_failure(
    receiver: Receiver, sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("AIRFLOW_HOME", str(blocker / "home"))  # the embedded store's directory cannot be made
    conns = set_connections(sms_simulator, monkeypatch, intl={"callback_secret": None})
    [body] = report_bodies("intl", "1", ["8613800138000"])
    response = post(receiver, conns["intl"], "reports", body, **auth_for("intl", sms_simulator))
    assert response.json() == {"code": 9999, "msg": "not stored; push again"}
    # a store connection that does not exist
    conns = set_connections(sms_simulator, monkeypatch, {"callback_store_conn_id": "sms_no_such_store"})
    [body] = report_bodies("account_md5", "1", ["135****9831"])
    assert post(receiver, conns["account_md5"], "reports", body).status_code == 503
    receiver.close_stores()


# ---------------------------------------------------------------------------------------------- through the simulator


def sim_admin(sim: GatewaySimulator, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{sim.http_url}/_sim/{action}", json=payload, timeout=60)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def push_url(receiver: Receiver, conn_id: str, kind: str, *, secret: bool = True) -> str:
    query = f"?secret={SECRET}" if secret else ""
    return f"{receiver.url}/sms/callbacks/{conn_id}/{kind}{query}"


def send_and_record(
    sim: GatewaySimulator, vendor: str, conn_id: str, backend: Backend, mobiles: list[str], *, fail: bool = False
) -> str:
    """Send through the hook (every number failing, or none), record it as the send operator does; the batch id."""
    sim.gateway.config.failure_rate = 1.0 if fail else 0.0
    [receipt] = get_sms_hook(conn_id).send(mobiles, "您的验证码是1234", signature="测试")
    backend.record_send(conn_id, [receipt])
    return str(receipt.batch_id)


@pytest.mark.parametrize("vendor", PUSH_VENDORS)
def test_simulator_pushes_reports_to_the_receiver(
    vendor: str, receiver: Receiver, sms_simulator: GatewaySimulator, conns: dict[str, str], backend: Backend
) -> None:
    conn_id = conns[vendor]
    url = push_url(receiver, conn_id, "reports")
    sim_admin(sms_simulator, "push-config", {"vendor": vendor, "kind": "reports", "url": url})
    mobiles = MOBILES[vendor]
    delivered_batch = send_and_record(sms_simulator, vendor, conn_id, backend, mobiles[:2])
    failed_batch = send_and_record(sms_simulator, vendor, conn_id, backend, mobiles[2:], fail=True)

    pushes = sim_admin(sms_simulator, "push", {"vendor": vendor})["pushes"]
    assert pushes and all(p["acknowledged"] and p["attempts"] == 1 and p["status"] == 200 for p in pushes)
    assert sum(p["records"] for p in pushes) == len(mobiles)
    assert all(SECRET not in p["target"] for p in pushes)

    rows = {row["mobile"]: row for row in backend.reports(vendor)}
    assert set(rows) == set(mobiles)  # account_md5's masked numbers resolved to the sent ones
    for mobile, row in rows.items():
        expected = (delivered_batch, DELIVERED) if mobile in mobiles[:2] else (failed_batch, FAILED)
        assert (row["batch_id"], row["status"]) == expected
        assert row["conn_id"] == conn_id
        if vendor == "account_md5":
            assert row["reported_mobile"] == f"{mobile[:3]}****{mobile[-4:]}"
    for batch_id, delivered, failed in ((delivered_batch, 2, 0), (failed_batch, 0, 1)):
        progress = backend.store.batch_progress(vendor, [batch_id])
        assert (progress.total, progress.delivered, progress.failed) == (delivered + failed, delivered, failed)

    # pushed reports are not queued for pulls too, and nothing is pushed twice
    assert sim_admin(sms_simulator, "push", {"vendor": vendor})["pushes"] == []
    if vendor != "intl":
        assert get_sms_hook(conn_id).fetch_reports() == []


@pytest.mark.parametrize("vendor", INBOUND_VENDORS)
def test_simulator_pushes_inbound_to_the_receiver(
    vendor: str, receiver: Receiver, sms_simulator: GatewaySimulator, conns: dict[str, str], backend: Backend
) -> None:
    conn_id = conns[vendor]
    sim_admin(
        sms_simulator,
        "push-config",
        {"vendor": vendor, "kind": "inbound", "url": push_url(receiver, conn_id, "inbound")},
    )
    for mobile, content in (("13800138000", "好的"), ("13912345678", "TD")):
        sim_admin(sms_simulator, "inbound", {"vendor": vendor, "mobile": mobile, "content": content, "ext_no": "12"})
    pushes = sim_admin(sms_simulator, "push", {})["pushes"]
    assert [p["acknowledged"] for p in pushes] == [True] * len(pushes)
    assert sum(p["records"] for p in pushes) == 2
    rows = backend.inbound(vendor)
    expected_mobiles = {"138****8000", "139****5678"} if vendor == "account_md5" else {"13800138000", "13912345678"}
    assert {r["mobile"] for r in rows} == expected_mobiles
    assert {r["content"] for r in rows} == {"好的", "TD"}
    assert get_sms_hook(conn_id).fetch_inbound() == []


def test_intl_pushes_again_after_a_store_failure(
    receiver: Receiver,
    sms_simulator: GatewaySimulator,
    conns: dict[str, str],
    backend: Backend,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_save = SmsStore.save_reports
    failures = {"left": 1}

    def flaky(
        self: SmsStore, reports: Any, *, conn_id: str = "", journal_id: int | None = None, more: Any = None
    ) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise sqlite3.OperationalError("database is locked")
        return real_save(self, reports, conn_id=conn_id, journal_id=journal_id, more=more)

    monkeypatch.setattr(SmsStore, "save_reports", flaky)
    conn_id = conns["intl"]
    sim_admin(
        sms_simulator,
        "push-config",
        {"vendor": "intl", "kind": "reports", "url": push_url(receiver, conn_id, "reports", secret=False)},
    )
    hook = get_sms_hook(conn_id)
    receipts = hook.send(MOBILES["intl"][:1], "code 1234", signature="Acme")
    backend.record_send(conn_id, receipts)
    [outcome] = sim_admin(sms_simulator, "push", {"vendor": "intl"})["pushes"]
    assert outcome["acknowledged"] and outcome["attempts"] == 2
    assert [r["batch_id"] for r in backend.reports("intl")] == [receipts[0].batch_id]

    # a store that stays down: the vendor gives up after its two re-pushes
    monkeypatch.setattr(SmsStore, "save_reports", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    hook.send(MOBILES["intl"][1:2], "code 5678", signature="Acme")
    [outcome] = sim_admin(sms_simulator, "push", {"vendor": "intl"})["pushes"]
    assert (outcome["acknowledged"], outcome["attempts"], outcome["status"]) == (False, 3, 200)
    assert len(backend.reports("intl")) == 1


def test_account_md5_pushes_once_whatever_the_answer(
    receiver: Receiver,
    sms_simulator: GatewaySimulator,
    conns: dict[str, str],
    backend: Backend,
    failing_store: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn_id = conns["account_md5"]
    sim_admin(
        sms_simulator,
        "push-config",
        {"vendor": "account_md5", "kind": "reports", "url": push_url(receiver, conn_id, "reports")},
    )
    [receipt] = get_sms_hook(conn_id).send(MOBILES["account_md5"][:1], "hello", signature="测试")
    with caplog.at_level(logging.ERROR, logger="airflow_provider_sms.receiver"):
        [outcome] = sim_admin(sms_simulator, "push", {"vendor": "account_md5"})["pushes"]
    assert (outcome["acknowledged"], outcome["attempts"], outcome["status"]) == (False, 1, 503)
    assert sim_admin(sms_simulator, "push", {})["pushes"] == []
    assert get_sms_hook(conn_id).fetch_reports() == []  # gone at the vendor: the error log is the last copy
    assert receipt.batch_id in caplog.text and "NOT stored" in caplog.text


def test_push_config_is_checked_and_can_be_turned_off(
    receiver: Receiver, sms_simulator: GatewaySimulator, conns: dict[str, str], backend: Backend
) -> None:
    for payload in (
        {"vendor": "cloud_mas", "kind": "reports", "url": "http://x"},
        {"vendor": "intl", "kind": "inbound", "url": "http://x"},
        {"vendor": "paasw_v2", "kind": "balance", "url": "http://x"},
        {"vendor": "paasw_v2", "kind": "reports", "url": "ftp://x"},
    ):
        response = requests.post(f"{sms_simulator.http_url}/_sim/push-config", json=payload, timeout=10)
        assert response.status_code == 400, payload
    conn_id = conns["paasw_v2"]
    sim_admin(
        sms_simulator,
        "push-config",
        {"vendor": "paasw_v2", "kind": "reports", "url": push_url(receiver, conn_id, "reports")},
    )
    hook = get_sms_hook(conn_id)
    hook.send(MOBILES["paasw_v2"], "hello", signature="测试")
    assert hook.fetch_reports() == []  # waiting for a push
    sim_admin(sms_simulator, "push-config", {"vendor": "paasw_v2", "kind": "reports", "url": None})
    assert len(hook.fetch_reports()) == 3  # back in the pull queue
    assert backend.reports() == []


def test_no_secret_is_logged(
    receiver: Receiver,
    sms_simulator: GatewaySimulator,
    plain_conns: dict[str, str],
    sqlite_home: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for vendor in PUSH_VENDORS:
        [body] = report_bodies(vendor, "1", MOBILES[vendor][:1])
        post(receiver, plain_conns[vendor], "reports", body, **auth_for(vendor, sms_simulator))
        post(receiver, plain_conns[vendor], "reports", body, secret=SECRET[:-1] + "0")
        post(receiver, plain_conns[vendor], "reports", data=b"{", headers={"Content-Type": "application/json"})
    # everything the server side wrote (urllib3 is this test's client, i.e. the vendor's side)
    server_side = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records if not r.name.startswith("urllib3"))
    assert "refused" in server_side and "uvicorn.access" in server_side and "secret=***" in server_side
    intl_digest = intl_headers(sms_simulator)["appSecret"]
    for secret in (SECRET, SECRET[:-1], intl_digest, sms_simulator.gateway.account("intl").secret):
        assert secret not in server_side


@pytest.mark.parametrize(
    "weak", [" ", 0, " " * 20, "fifteen-chars-x", True], ids=["blank", "zero", "spaces", "15", "bool"]
)
@pytest.mark.parametrize("vendor", ["paasw_v2", "intl"])
def test_a_trivial_callback_secret_leaves_push_disabled_and_says_why_once(
    vendor: str,
    weak: Any,
    receiver: Receiver,
    sms_simulator: GatewaySimulator,
    monkeypatch: pytest.MonkeyPatch,
    sqlite_home: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn_id = f"sms_weak_{uuid.uuid4().hex[:8]}"  # the receiver warns once per connection id
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", sms_simulator.connection_json(vendor, callback_secret=weak))
    [body] = report_bodies(vendor, "1", MOBILES[vendor][:1])[:1]
    headers = intl_headers(sms_simulator) if vendor == "intl" else None
    with caplog.at_level(logging.DEBUG, logger="airflow_provider_sms.receiver"):
        for _ in range(3):
            response = post(receiver, conn_id, "reports", body, secret=str(weak), headers=headers)
            assert response.status_code == 404 and response.json() == {"detail": "Not Found"}
    assert stored_rows(sqlite_home, "delivery_reports") == 0
    why = [
        r for r in caplog.records if r.name.startswith("airflow_provider_sms.receiver") and conn_id in r.getMessage()
    ]
    warnings = [r for r in why if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and len(why) == 3
    assert "callback_secret" in warnings[0].getMessage() and "at least 16 characters" in warnings[0].getMessage()
    # sixteen characters are enough
    good = "sixteen-chars-ok"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", sms_simulator.connection_json(vendor, callback_secret=good))
    assert post(receiver, conn_id, "reports", body, secret=good, headers=headers).status_code == 200


@pytest.fixture(scope="module")
def impatient_receiver() -> Iterator[Receiver]:
    """A receiver that waits at most 1 s for a body, for the read timeout."""
    running, stop = start_receiver(read_timeout=1.0)
    yield running
    running.close_stores()
    stop()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("vendor", ["paasw_v2", "intl"])
def test_a_body_that_stalls_is_cut_off_with_408(
    vendor: str,
    chunked: bool,
    impatient_receiver: Receiver,
    sms_simulator: GatewaySimulator,
    plain_conns: dict[str, str],
    sqlite_home: Path,
) -> None:
    """Authenticated, then a few bytes of the body, then nothing: answered 408 once the read timeout passes."""
    auth = auth_for(vendor, sms_simulator)
    query = "" if vendor == "intl" else f"?secret={SECRET}"
    head = [f"POST /sms/callbacks/{plain_conns[vendor]}/reports{query} HTTP/1.1", "Host: x"]
    head += [f"{k}: {v}" for k, v in {**auth.get("headers", {}), **JSON_HEADERS}.items()]
    head.append("Transfer-Encoding: chunked" if chunked else "Content-Length: 500")
    start = b'{"count": 1, "data": ['
    first = b"%x\r\n%s\r\n" % (len(start), start) if chunked else start
    host, port = impatient_receiver.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        began = time.monotonic()
        sock.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + first)
        reply = b""
        while chunk := sock.recv(65536):  # the server answers, then closes the half-read connection
            reply += chunk
        elapsed = time.monotonic() - began
    assert 0.9 < elapsed < 5, elapsed
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout", reply
    answer = json.loads(rest.partition(b"\r\n\r\n")[2])
    if vendor == "intl":
        assert answer["code"] == 9999 and "within 1 s" in answer["msg"]  # non-zero: intl pushes again
    else:
        assert answer == {"code": 408, "message": "the body did not arrive within 1 s"}
    assert stored_rows(sqlite_home, "delivery_reports") == 0
    # a whole body in time is taken
    [body] = report_bodies(vendor, "1", MOBILES[vendor][:1])[:1]
    assert post(impatient_receiver, plain_conns[vendor], "reports", body, **auth).status_code == 200


FANCY_SECRET = "Ab/cd+ef gh%ij&k=l-üñ-0123456789"
JSON_HEADERS = {"Content-Type": "application/json"}


def test_the_secret_is_redacted_from_the_access_log_in_every_form(
    receiver: Receiver,
    sms_simulator: GatewaySimulator,
    monkeypatch: pytest.MonkeyPatch,
    sqlite_home: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Any parameter name, any case, URL-encoded with either hex case or ``+`` for a space."""
    from urllib.parse import quote, quote_plus, unquote, unquote_plus

    conns = set_connections(sms_simulator, monkeypatch, paasw_v2={"callback_secret": FANCY_SECRET})
    upper = quote(FANCY_SECRET, safe="")
    every = "".join(f"%{byte:02x}" for byte in FANCY_SECRET.encode())  # every byte encoded, lower-case hex
    queries = [
        f"secret={upper}",
        f"secret={quote_plus(FANCY_SECRET)}&Secret={quote_plus(FANCY_SECRET)}",
        f"secret={upper}&note={every}",
        f"SECRET={upper}",  # not the parameter the receiver reads: 401, and redacted all the same
        f"secret={upper}&raw={quote(FANCY_SECRET, safe='/%+')}",  # what can go unencoded, unencoded
    ]
    [body] = report_bodies("paasw_v2", "1", MOBILES["paasw_v2"][:1])
    data = json.dumps(body).encode()
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    statuses = []
    host, port = receiver.url.removeprefix("http://").split(":")
    for query in queries:
        client = http.client.HTTPConnection(host, int(port), timeout=30)  # exactly these bytes on the wire
        client.request("POST", f"/sms/callbacks/{conns['paasw_v2']}/reports?{query}", data, JSON_HEADERS)
        statuses.append(client.getresponse().status)
        client.close()
    assert statuses == [200, 200, 200, 401, 200]
    access = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert len(access) == len(queries)
    for line in access:
        for view in (line, unquote(line), unquote_plus(line)):
            assert FANCY_SECRET.lower() not in view.lower(), line
        assert "***" in unquote(line)


# ---------------------------------------------------------------------------------------------- simulator wire


class Customer:
    """A plain HTTP server standing for a customer's push URL: records each POST, answers from a script."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self.answers: list[tuple[int, bytes]] = []  # consumed in order; then ``default``
        self.default: tuple[int, bytes] = (200, b'{"code": 0}')
        customer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                customer.posts.append((self.path, dict(self.headers.items()), body))
                status, reply = customer.answers.pop(0) if customer.answers else customer.default
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/push"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def json_bodies(self) -> list[Any]:
        return [json.loads(body) for _, _, body in self.posts]


@pytest.fixture
def customer() -> Iterator[Customer]:
    running = Customer()
    yield running
    running.server.shutdown()
    running.server.server_close()


def test_simulator_pushes_in_each_vendors_format(
    sms_simulator: GatewaySimulator, plain_conns: dict[str, str], customer: Customer
) -> None:
    gateway = sms_simulator.gateway
    for vendor in PUSH_VENDORS:
        sim_admin(sms_simulator, "push-config", {"vendor": vendor, "kind": "reports", "url": customer.url})
    for vendor in INBOUND_VENDORS:
        sim_admin(sms_simulator, "push-config", {"vendor": vendor, "kind": "inbound", "url": customer.url + "?in=1"})
    batches = {}
    for vendor in PUSH_VENDORS:
        gateway.config.failure_rate = 1.0 if vendor in ("intl", "account_md5") else 0.0
        [receipt] = get_sms_hook(plain_conns[vendor]).send(MOBILES[vendor][:2], "hello", signature="测试")
        batches[vendor] = receipt.batch_id
    for vendor in INBOUND_VENDORS:
        gateway.add_inbound(vendor, "13800138000", "好的", "12")

    def pushed(vendor: str) -> list[tuple[str, dict[str, str], Any]]:
        customer.posts.clear()
        customer.default = (200, b'{"code": "10000", "msg": "ok"}' if vendor == "paasw_v1" else b'{"code": 0}')
        outcomes = sim_admin(sms_simulator, "push", {"vendor": vendor})["pushes"]
        assert all(o["acknowledged"] for o in outcomes)
        return [(path, headers, json.loads(body)) for path, headers, body in customer.posts]

    v2 = pushed("paasw_v2")
    [(_, headers, reports)] = [p for p in v2 if p[0] == "/push"]
    assert headers["Content-Type"] == "application/json;charset=utf-8"
    assert reports["count"] == 2 and {r["batchId"] for r in reports["data"]} == {batches["paasw_v2"]}
    assert set(reports["data"][0]) == {"mobile", "chnRptDate", "chnRptCode", "batchId"}
    assert {r["chnRptCode"] for r in reports["data"]} == {"DELIVRD"}
    [(_, _, mo)] = [p for p in v2 if p[0] == "/push?in=1"]
    assert mo == {
        "count": 1,
        "data": [{"mobile": "13800138000", "extNo": "12", "content": "好的", "replyDate": mo["data"][0]["replyDate"]}],
    }

    v1 = pushed("paasw_v1")
    [(_, _, reports)] = [p for p in v1 if p[0] == "/push"]
    assert isinstance(reports, list) and len(reports) == 2
    assert set(reports[0]) == {
        "phone_number",
        "send_time",
        "report_time",
        "success",
        "code",
        "message",
        "sms_size",
        "biz_id",
    }
    assert {(r["biz_id"], r["code"], r["success"]) for r in reports} == {(batches["paasw_v1"], "10000", True)}
    [(_, _, mo)] = [p for p in v1 if p[0] == "/push?in=1"]
    assert mo[0]["phone_number"] == "13800138000" and mo[0]["sign"] == "模拟签名"

    intl = pushed("intl")
    assert len(intl) == 2  # one report per POST
    account = gateway.account("intl")
    for _, headers, report in intl:
        assert headers["appKey"] == account.login
        assert headers["appSecret"] == hashlib.md5(account.secret.encode()).hexdigest().upper()
        assert report["msgId"] == batches["intl"] and report["status"] == 1 and report["errorCode"] == "UNDELIV"
        assert len(report["timestamp"]) == 12 and report["timestamp"].isdigit()

    md5 = pushed("account_md5")
    reports = [body for path, _, body in md5 if path == "/push"]
    assert len(reports) == 2
    assert {tuple(sorted(r)) for r in reports} == {("mobile", "sendId", "status", "times")}
    assert {(r["sendId"], r["status"]) for r in reports} == {(batches["account_md5"], "MBBLACK")}
    assert {r["mobile"] for r in reports} == {"135****9831", "136****0014"}
    [mo] = [body for path, _, body in md5 if path == "/push?in=1"]
    assert mo == {"mobile": "138****8000", "content": "好的", "times": mo["times"], "extNo": "12"}


@pytest.mark.parametrize(
    ("vendor", "answers", "attempts", "acknowledged"),
    [
        ("intl", [(200, b'{"code": 1001}'), (200, b"not json")], 3, True),  # re-pushed twice, then taken
        ("intl", [(200, b'{"code": 9999}')] * 3, 3, False),  # the vendor gives up after two re-pushes
        ("intl", [(503, b'{"code": 0}'), (200, b'{"code": "0"}')], 3, True),  # 0 as a string is no zero code
        ("paasw_v1", [(200, b'{"code": 10000, "msg": "ok"}')], 1, True),  # the report answer's number
        ("paasw_v1", [(200, b'{"code": "1", "msg": "no"}')], 1, False),  # no re-push documented
        ("paasw_v2", [(500, b"")], 1, False),
        ("account_md5", [(500, b"")], 1, False),  # pushed once, whatever happens
        ("account_md5", [(200, b"")], 1, True),  # HTTP 200 is all it asks
    ],
)
def test_simulator_push_retries_as_each_document_says(
    vendor: str,
    answers: list[tuple[int, bytes]],
    attempts: int,
    acknowledged: bool,
    sms_simulator: GatewaySimulator,
    plain_conns: dict[str, str],
    customer: Customer,
) -> None:
    sim_admin(sms_simulator, "push-config", {"vendor": vendor, "kind": "reports", "url": customer.url})
    get_sms_hook(plain_conns[vendor]).send(MOBILES[vendor][:1], "hello", signature="测试")
    customer.answers = list(answers)
    [outcome] = sim_admin(sms_simulator, "push", {"vendor": vendor})["pushes"]
    assert (outcome["attempts"], outcome["acknowledged"]) == (attempts, acknowledged)
    assert len(customer.posts) == attempts
    assert len({body for _, _, body in customer.posts}) == 1  # the same report each time


def test_simulator_push_to_nowhere(sms_simulator: GatewaySimulator, plain_conns: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/push?secret={SECRET}"
    sim_admin(sms_simulator, "push-config", {"vendor": "intl", "kind": "reports", "url": url})
    get_sms_hook(plain_conns["intl"]).send(MOBILES["intl"][:1], "hello", signature="Acme")
    [outcome] = sim_admin(sms_simulator, "push", {})["pushes"]
    assert (outcome["attempts"], outcome["acknowledged"], outcome["status"]) == (3, False, None)
    assert outcome["error"] == "ConnectionError" and SECRET not in json.dumps(outcome)
    assert sms_simulator.gateway.stats()["pushes"][-1] == outcome


# ---------------------------------------------------------------------------------------------- subprocesses


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_standalone_module_serves_the_same_urls(tmp_path: Path, sms_simulator: GatewaySimulator) -> None:
    """``python -m airflow_provider_sms.receiver`` over HTTPS, writing to the store named by --store-conn-id."""
    from airflow_provider_sms.simulator.server import _self_signed_context

    _self_signed_context(tmp_path, "127.0.0.1")  # writes cert.pem and key.pem
    port = free_port()
    store_path = tmp_path / "other-store.db"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW_CONN_SMS_PUSHED": sms_simulator.connection_json("paasw_v1", callback_secret=SECRET),
        "AIRFLOW_CONN_SMS_RECEIVER_STORE": json.dumps({"conn_type": "sqlite", "host": str(store_path)}),
    }
    command = [sys.executable, "-m", "airflow_provider_sms.receiver", "--port", str(port)]
    command += ["--store-conn-id", "sms_receiver_store", "--max-body-bytes", "5000"]
    command += ["--ssl-certfile", str(tmp_path / "cert.pem"), "--ssl-keyfile", str(tmp_path / "key.pem")]
    log_path = tmp_path / "receiver.log"
    log_file = log_path.open("w")
    process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, text=True)
    base = f"https://127.0.0.1:{port}/sms"
    tls = {"verify": str(tmp_path / "cert.pem"), "timeout": 10}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/health", verify=tls["verify"], timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert process.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the standalone receiver did not start"
            time.sleep(0.2)
        [body] = report_bodies("paasw_v1", "39036632588910887018", ["13800138000"])
        url = f"{base}/callbacks/sms_pushed/reports"
        with requests.post(url, params={"secret": SECRET}, json=body, **tls) as response:
            assert response.status_code == 200 and response.json() == OK_ANSWERS["paasw_v1"]
        assert requests.post(url, params={"secret": "nope"}, json=body, **tls).status_code == 401
        assert requests.post(url, params={"secret": SECRET}, json=body * 60, **tls).status_code == 413
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)  # an idle keep-alive connection delays the stop by at most 10 s
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_file.close()
    output = log_path.read_text()
    # a clean stop on SIGTERM (uvicorn re-raises the signal once it has shut down)
    assert process.returncode in (0, -15) and "Finished server process" in output, output[-3000:]
    with sqlite3.connect(store_path) as conn:
        assert conn.execute("SELECT batch_id, mobile, status FROM sms_delivery_reports").fetchall() == [
            ("39036632588910887018", "13800138000", DELIVERED)
        ]
    assert not (tmp_path / "sms_store.db").exists()  # --store-conn-id, not the embedded default
    assert f"Uvicorn running on https://127.0.0.1:{port}" in output
    assert "/sms/callbacks/sms_pushed/reports?secret=***" in output  # the access log, redacted
    assert SECRET not in output and "nope" not in output


def test_importing_the_plugin_is_cheap_and_needs_no_connection(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        import airflow.sdk
        start = time.perf_counter()
        import airflow_provider_sms.plugins as plugins
        elapsed = time.perf_counter() - start
        assert "fastapi" not in sys.modules, "the plugin imported FastAPI"
        [entry] = plugins.SmsPlugin.fastapi_apps
        assert entry["url_prefix"] == "/sms" and plugins.SmsPlugin.name == "sms"
        print(f"{elapsed * 1000:.1f}")
        """
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.strip().splitlines()[-1]) < 50


def test_airflow_lists_the_plugin(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "plugins", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [listing] = [line for line in result.stdout.splitlines() if line.startswith("[{")]
    plugins = {p["name"]: p for p in json.loads(listing)}
    [app] = plugins["sms"]["fastapi_apps"]
    assert app["url_prefix"] == "/sms" and app["name"] == "SMS push receiver"
    assert "airflow-provider-sms" in plugins["sms"]["source"]


def test_airflow_api_server_mounts_the_receiver_at_sms(tmp_path: Path, sms_simulator: GatewaySimulator) -> None:
    """The app ``airflow api-server`` serves (``airflow.api_fastapi.main:app``) serves the receiver at /sms,
    without Airflow's auth, and the receiver finds a connection stored in the metadata database."""
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    # a deployment's settings: no connections from the environment, no unit-test configuration
    env = {k: v for k, v in env.items() if not k.startswith("AIRFLOW_CONN_") and k != "AIRFLOW__CORE__UNIT_TEST_MODE"}

    def airflow(*args: str) -> None:
        command = [sys.executable, "-m", "airflow", *args]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr[-3000:]

    airflow("db", "migrate")
    conn = sms_simulator.connection_json("paasw_v2", callback_secret=SECRET)
    airflow("connections", "add", "sms_pushed", "--conn-json", conn)
    script = textwrap.dedent(
        f"""
        import json, logging, sqlite3
        from airflow.api_fastapi.main import app
        from starlette.testclient import TestClient

        # the test client logs each URL it requests (httpx2, which starlette prefers once installed, does
        # so at INFO): that is the pushing vendor's side; the check below is about what the server logs
        for client_logger in ("httpx", "httpx2"):
            logging.getLogger(client_logger).setLevel(logging.WARNING)

        body = {json.dumps(report_bodies("paasw_v2", "555", ["13800138000"])[0])!r}
        headers = {{"Content-Type": "application/json"}}
        with TestClient(app) as client:
            url = "/sms/callbacks/sms_pushed/reports"
            good = client.post(url, params={{"secret": {SECRET!r}}}, content=body, headers=headers)
            bad = client.post(url, params={{"secret": "wrong"}}, content=body, headers=headers)
            unknown = client.post("/sms/callbacks/sms_unknown/reports", params={{"secret": "x"}}, content=body)
            health = client.get("/sms/health")
        print(json.dumps([good.status_code, good.json(), bad.status_code, unknown.status_code, health.status_code]))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    good_status, good_body, bad_status, unknown_status, health_status = json.loads(
        result.stdout.strip().splitlines()[-1]
    )
    assert (good_status, good_body) == (200, OK_ANSWERS["paasw_v2"]), result.stdout[-3000:]
    assert (bad_status, unknown_status, health_status) == (401, 404, 200)
    with sqlite3.connect(tmp_path / "sms_store.db") as db:
        rows = db.execute("SELECT batch_id, mobile, conn_id FROM sms_delivery_reports").fetchall()
    assert rows == [("555", "13800138000", "sms_pushed")]
    assert SECRET not in result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------- under load


def test_a_connection_is_looked_up_once_per_cache_period_and_a_change_applies_after_it(
    sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, sqlite_home: Path
) -> None:
    """A push per record must not cost a connection lookup each; a rotated secret still applies soon."""
    from airflow_provider_sms.receiver import app as receiver_app

    conn_ids = set_connections(sms_simulator, monkeypatch)
    lookups: list[str] = []
    real = receiver_app._connection
    monkeypatch.setattr(receiver_app, "_connection", lambda conn_id: lookups.append(conn_id) or real(conn_id))
    running, stop = start_receiver(connection_cache_seconds=1.0)
    try:
        conn_id = conn_ids["paasw_v2"]
        for i in range(5):
            [body] = report_bodies("paasw_v2", "B1", [f"1380013800{i}"])
            assert post(running, conn_id, "reports", body).status_code == 200
        assert lookups == [conn_id]
        set_connections(sms_simulator, monkeypatch, paasw_v2={"callback_secret": "rotated-secret-0123456789"})
        [body] = report_bodies("paasw_v2", "B1", ["13800138009"])
        assert post(running, conn_id, "reports", body).status_code == 200  # the old secret, within the period
        time.sleep(1.1)
        assert post(running, conn_id, "reports", body).status_code == 401
        assert post(running, conn_id, "reports", body, secret="rotated-secret-0123456789").status_code == 200
        assert lookups == [conn_id, conn_id]
    finally:
        running.close_stores()
        stop()


def test_a_push_stores_only_its_own_page_and_sweeps_pages_a_crash_left_once_they_are_old(
    receiver: Receiver, plain_conns: dict[str, str], sqlite_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of pushes in flight beside it are their own requests' to store: a push takes only pages
    journaled long enough ago (a crash left them), and looks for them at most every SWEEP_EVERY s."""
    from airflow_provider_sms.receiver import app as receiver_app

    conn_id = plain_conns["paasw_v2"]
    with SmsStore() as store:
        recent = store.journal(
            [{"batchId": "B9", "mobile": "13800138001", "chnRptCode": "DELIVRD"}],
            conn_id=conn_id,
            vendor="paasw_v2",
            kind="reports",
            source="push",
        )
        monkeypatch.setattr(receiver_app, "LEFTOVER_AGE", 0.5)
        [body] = report_bodies("paasw_v2", "B1", ["13800138000"])
        assert post(receiver, conn_id, "reports", body).status_code == 200
        assert [e.id for e in store.open_journal(conn_id, "reports")] == [recent]  # too young to be a leftover
        time.sleep(0.6)
        assert post(receiver, conn_id, "reports", body).status_code == 200
        assert [e.id for e in store.open_journal(conn_id, "reports")] == [recent]  # swept a moment ago already
        monkeypatch.setattr(receiver_app, "SWEEP_EVERY", 0.0)
        assert post(receiver, conn_id, "reports", body).status_code == 200
        assert store.open_journal(conn_id, "reports") == []
        assert {(r["batch_id"], r["mobile"]) for page in store.iter_reports(vendor="paasw_v2") for r in page} == {
            ("B1", "13800138000"),
            ("B9", "13800138001"),
        }


@pytest.mark.parametrize("kind", ["reports", "inbound"])
def test_pushes_that_arrive_while_the_store_lock_is_awaited_join_that_commit(
    kind: str,
    receiver: Receiver,
    sms_simulator: GatewaySimulator,
    conns: dict[str, str],
    backend: Backend,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another writer (another receiver process) holds the store's write lock: the first push leads a
    group of one and waits for the lock, the seven after it queue behind. On PostgreSQL, once the lock
    is granted they all go in its one commit; on SQLite (one writing process under load) the seven make
    the next group, as before. Each is answered only after its commit, in seq order, the counters exact."""
    from concurrent.futures import ThreadPoolExecutor

    conn_id = conns["paasw_v2"]
    mobiles = [f"1380013800{i}" for i in range(8)]
    batch_id = send_and_record(sms_simulator, "paasw_v2", conn_id, backend, mobiles[:4])  # the other 4: not ours
    # a first push makes the tables (and warms the receiver up)
    [body] = (report_bodies if kind == "reports" else inbound_bodies)(
        "paasw_v2", *(("B0", ["13900000000"]) if kind == "reports" else ([("13900000000", "hi")],))
    )
    assert post(receiver, conn_id, kind, body).status_code == 200
    calls: list[tuple[int, int]] = []
    save = "save_reports" if kind == "reports" else "save_inbound"
    real = getattr(SmsStore, save)

    def counting(self: SmsStore, records: Any, **kwargs: Any) -> Any:
        records, more, joined = list(records), kwargs.pop("more", None), []

        def counted(room: int) -> Any:
            joined.extend(more(room) if more is not None else ())
            return joined

        saved = real(self, records, more=counted, **kwargs)
        calls.append((len(records), len(joined)))
        return saved

    monkeypatch.setattr(SmsStore, save, counting)
    release = hold_write_lock(backend, "delivery_reports" if kind == "reports" else "inbound_messages")

    def push(mobile: str) -> int:
        if kind == "reports":
            [body] = report_bodies("paasw_v2", batch_id, [mobile])
        else:
            [body] = inbound_bodies("paasw_v2", [(mobile, "TD")])
        return post(receiver, conn_id, kind, body).status_code

    groups = receiver.app.state.receiver.state.stores._groups
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(push, mobiles[0])]
        deadline = time.monotonic() + 20
        while not any(g._busy for g in groups.values()):  # the first leads, and waits for the lock
            assert time.monotonic() < deadline
            time.sleep(0.01)
        futures += [pool.submit(push, m) for m in mobiles[1:]]
        while sum(len(g._waiting) for g in groups.values()) < 7:  # the others wait behind it
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not any(f.done() for f in futures)  # none answered before the commit
        release()
        statuses = [f.result() for f in futures]
    assert statuses == [200] * 8
    if backend.name == "postgres":
        assert calls == [(1, 7)]  # one commit: the leader's push and the seven that came while it waited
    else:
        assert calls == [(1, 0), (7, 0)]
    rows = backend.reports("paasw_v2") if kind == "reports" else backend.inbound("paasw_v2")
    assert sorted(row["mobile"] for row in rows[1:]) == mobiles  # each once, after the first push
    first = rows[0]["seq"]
    assert [row["seq"] for row in rows] == list(range(first, first + 9))  # seq order is commit order
    if kind == "reports":
        progress = backend.store.batch_progress("paasw_v2", [batch_id])
        assert (progress.total, progress.delivered, progress.failed) == (4, 4, 0)
    assert backend.store.open_journal(conn_id, kind) == []


def test_a_push_that_will_not_parse_does_not_join_under_the_lock(
    receiver: Receiver, conns: dict[str, str], backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the leader waits for the lock, a good push, a push with a malformed record and another good
    one queue: the first good one joins the leader's commit, the malformed one stops the joining (the
    order is kept) and leads the next group, which stores around its bad record; all are answered 200."""
    from concurrent.futures import ThreadPoolExecutor

    if backend.name != "postgres":
        pytest.skip("pushes join a commit under the lock on PostgreSQL only")
    conn_id = conns["paasw_v2"]
    [warm] = report_bodies("paasw_v2", "B0", ["13900000000"])
    assert post(receiver, conn_id, "reports", warm).status_code == 200
    calls: list[tuple[int, int]] = []
    real = SmsStore.save_reports

    def counting(self: SmsStore, records: Any, **kwargs: Any) -> Any:
        records, more, joined = list(records), kwargs.pop("more", None), []

        def counted(room: int) -> Any:
            joined.extend(more(room) if more is not None else ())
            return joined

        saved = real(self, records, more=counted, **kwargs)
        calls.append((len(records), len(joined)))
        return saved

    monkeypatch.setattr(SmsStore, "save_reports", counting)
    bodies = [report_bodies("paasw_v2", "B1", [f"1380013800{i}"])[0] for i in range(4)]
    del bodies[2]["data"][0]["batchId"]
    release = hold_write_lock(backend, "delivery_reports")
    groups = receiver.app.state.receiver.state.stores._groups
    deadline = time.monotonic() + 20
    with ThreadPoolExecutor(4) as pool:
        futures = []
        for waiting, body in enumerate(bodies):
            futures.append(pool.submit(post, receiver, conn_id, "reports", body))
            while not any(g._busy for g in groups.values()) or sum(len(g._waiting) for g in groups.values()) < waiting:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        release()
        statuses = [f.result().status_code for f in futures]
    assert statuses == [200] * 4
    assert calls[0] == (1, 1)  # the leader's push and the good one before the malformed one
    assert sorted(r["mobile"] for r in backend.reports("paasw_v2") if r["batch_id"] == "B1") == [
        "13800138000",
        "13800138001",
        "13800138003",
    ]
    [kept] = backend.store.quarantined(conn_id=conn_id)
    assert "batchId" in kept["reason"] and kept["raw"]["mobile"] == "13800138002"
    assert backend.store.open_journal(conn_id, "reports") == []


def hold_write_lock(backend: Backend, counter: str) -> Callable[[], None]:
    """Take the store's write lock from outside, as another receiver process would (SQLite: the file's
    write lock; PostgreSQL: the counter's row lock); returns what releases it."""
    if backend.name == "sqlite":
        other = sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "sms_store.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")

        def release() -> None:
            other.execute("ROLLBACK")
            other.close()

        return release
    import psycopg

    conn = psycopg.connect(postgres_uri())
    prefix = backend.extras["callback_store_table_prefix"]
    conn.execute(f"SELECT value FROM {prefix}counters WHERE name = %s FOR UPDATE", (counter,))

    def release_row() -> None:
        conn.rollback()
        conn.close()

    return release_row


def test_pushes_that_arrive_together_are_committed_together_and_each_answered_once_stored(
    receiver: Receiver, plain_conns: dict[str, str], sqlite_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight pushes at once: the first commits alone (slowly), the seven that queued behind it go in one
    group; every push is answered 200 only once its record is stored, and none is journaled."""
    from concurrent.futures import ThreadPoolExecutor

    groups: list[int] = []
    real = SmsStore.save_reports
    journaled: list[int] = []
    real_journal = SmsStore.journal_pages

    def slow(self: SmsStore, reports: Any, **kwargs: Any) -> Any:
        reports, more, joined = list(reports), kwargs.pop("more", None), []

        def counted(room: int) -> Any:  # the pushes that join once the lock is held
            joined.extend(more(room) if more is not None else ())
            return joined

        time.sleep(0.3)  # a slow disk: the others arrive meanwhile
        saved = real(self, reports, more=counted, **kwargs)
        groups.append(len(reports) + len(joined))
        return saved

    def journal(self: SmsStore, pages: Any, **kwargs: Any) -> list[int]:
        journaled.append(len(pages))
        return real_journal(self, pages, **kwargs)

    monkeypatch.setattr(SmsStore, "save_reports", slow)
    monkeypatch.setattr(SmsStore, "journal_pages", journal)
    conn_id = plain_conns["paasw_v2"]
    mobiles = [f"1380013800{i}" for i in range(8)]

    def push(mobile: str) -> int:
        [body] = report_bodies("paasw_v2", "B1", [mobile])
        response = post(receiver, conn_id, "reports", body)
        with SmsStore() as store:  # answered: so it is stored
            stored = {r["mobile"] for page in store.iter_reports(vendor="paasw_v2") for r in page}
        assert mobile in stored
        return response.status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(push, mobiles))
    assert statuses == [200] * 8
    assert sum(groups) == 8 and max(groups) > 1 and len(groups) < 8
    assert journaled == []  # stored cleanly: the answer after the commit is all a push needs
    with SmsStore() as store:
        assert store.open_journal(conn_id, "reports") == []
