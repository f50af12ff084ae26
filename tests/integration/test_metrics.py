"""Metrics reach a real StatsD listener through Airflow's own ``Stats``, configured as a deployment would.

A child process runs the operators and the push receiver against the simulator with
``[metrics] statsd_on`` (and ``statsd_influxdb_enabled``, so the tags travel in the lines) pointed at a
UDP socket this test holds; the test reads the lines Airflow's StatsD client sent.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_sms import metrics
from airflow_provider_sms.simulator import GatewaySimulator, SimConfig

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SECRET = "metrics-secret-" + "0c4e8a17b2d9"

CHILD = textwrap.dedent(
    """
    import json, sys
    from fastapi.testclient import TestClient
    from airflow_provider_sms.errors import SmsVendorError
    from airflow_provider_sms.operators import (
        SmsBalanceOperator, SmsInboundSyncOperator, SmsReportsSyncOperator, SmsSendOperator,
    )
    from airflow_provider_sms.receiver.app import create_standalone_app
    from airflow_provider_sms.testing import FakeTaskInstance, task_context

    mobiles = [f"138{i:08d}" for i in range(10)]
    out = {"send": SmsSendOperator(
        task_id="send", sms_conn_id="sms_paasw_v2", mobiles=mobiles, content="hi", signature="S"
    ).execute(task_context())}
    out["reports"] = SmsReportsSyncOperator(task_id="dlr", sms_conn_id="sms_paasw_v2").execute(task_context())
    out["inbound"] = SmsInboundSyncOperator(task_id="mo", sms_conn_id="sms_paasw_v2").execute(task_context())
    out["balance"] = SmsBalanceOperator(task_id="bal", sms_conn_id="sms_paasw_v2").execute(task_context())
    try:
        SmsBalanceOperator(task_id="bad", sms_conn_id="sms_bad").execute(task_context())
    except SmsVendorError as exc:
        out["vendor_error"] = exc.code
    client = TestClient(create_standalone_app())
    inbound = {"count": 1, "data": [{"mobile": "13800000009", "content": "TD", "moTime": "2024-05-01 16:00:00"}]}
    for secret in (sys.argv[1], "wrong-secret-0000000000"):
        out.setdefault("push", []).append(
            client.post("/sms/callbacks/sms_paasw_v2/inbound", params={"secret": secret}, json=inbound).status_code
        )
    print(json.dumps(out, default=str))
    """
)


@pytest.fixture
def statsd() -> Iterator[socket.socket]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.5)
    yield listener
    listener.close()


def received(listener: socket.socket) -> list[str]:
    """Every line that came until the socket stays quiet (the child has exited: nothing more is coming)."""
    lines: list[str] = []
    while True:
        try:
            data = listener.recv(65536)
        except TimeoutError:
            return lines
        lines.extend(data.decode().splitlines())


def parse(lines: list[str]) -> dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[float, str]]]:
    """InfluxDB-style StatsD lines, ``airflow.<name>,k=v,...:<value>|<type>``, by (name, tags)."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], list[tuple[float, str]]] = defaultdict(list)
    for line in lines:
        head, _, rest = line.partition(":")
        value, _, kind = rest.partition("|")
        name, *tag_parts = head.split(",")
        tags = frozenset(tuple(part.split("=", 1)) for part in tag_parts)
        found[(name.removeprefix("airflow."), tags)].append((float(value), kind))  # type: ignore[arg-type]
    return found


def total(found: dict, name: str, **tags: str) -> float:
    """The sum of a counter's values over lines that carry at least these tags."""
    wanted = set(tags.items())
    return sum(v for (n, t), values in found.items() if n == name and wanted <= t for v, _ in values)


def test_operator_and_receiver_metrics_reach_statsd(
    sms_simulator: GatewaySimulator, statsd: socket.socket, tmp_path: Path
) -> None:
    sms_simulator.gateway.config = SimConfig(pull_interval=0.0, failure_rate=0.4)
    sms_simulator.gateway.add_inbound("paasw_v2", "13800000001", "好的")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(statsd.getsockname()[1]),
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
        "AIRFLOW_CONN_SMS_PAASW_V2": sms_simulator.connection_json("paasw_v2", callback_secret=SECRET),
        "AIRFLOW_CONN_SMS_BAD": json.loads(sms_simulator.connection_json("paasw_v2")) | {"password": "not-the-secret"},
    }
    env["AIRFLOW_CONN_SMS_BAD"] = json.dumps(env["AIRFLOW_CONN_SMS_BAD"])
    child = subprocess.run(
        [sys.executable, "-c", CHILD, SECRET],
        check=False,
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    out = json.loads(child.stdout.strip().splitlines()[-1])
    found = parse(received(statsd))
    v2 = {"vendor": "paasw_v2", "conn_id": "sms_paasw_v2"}

    # the send: one counter line per kind, with the numbers the summary reports
    assert out["send"]["accepted_numbers"] == 10
    assert found[(metrics.NUMBERS_SENT, frozenset(v2.items()))] == [(10.0, "c")]
    assert found[(metrics.NUMBERS_ACCEPTED, frozenset(v2.items()))] == [(10.0, "c")]
    assert total(found, metrics.NUMBERS_UNKNOWN) == 0 and total(found, metrics.NUMBERS_REFUSED) == 0

    # the reports the sync stored, by status, as the store holds them
    with sqlite3.connect(tmp_path / "sms_store.db") as db:
        statuses = dict(db.execute("SELECT status, count(*) FROM sms_delivery_reports GROUP BY status").fetchall())
    assert statuses.get("delivered", 0) > 0 and statuses.get("failed", 0) > 0  # failure_rate 0.4 of 10
    assert total(found, metrics.NUMBERS_DELIVERED, source="pull", **v2) == statuses["delivered"]
    assert total(found, metrics.NUMBERS_FAILED, source="pull", **v2) == statuses["failed"]
    assert total(found, metrics.RECORDS_PULLED, kind="reports", **v2) == out["reports"]["fetched"] == 10
    assert total(found, metrics.RECORDS_PULLED, kind="inbound", **v2) == out["inbound"]["fetched"] == 1

    # pushes: one stored, one refused for its secret; its record counted as pushed
    assert out["push"] == [200, 401]
    assert total(found, metrics.PUSHES_RECEIVED, kind="inbound", outcome="stored", **v2) == 1
    assert total(found, metrics.PUSHES_RECEIVED, kind="inbound", outcome="refused", **v2) == 1
    assert total(found, metrics.RECORDS_PUSHED, kind="inbound", **v2) == 1

    # the balance gauge, and the refused token by the vendor's code
    gauges = [v for (n, t), values in found.items() if n == metrics.BALANCE and set(v2.items()) <= t for v in values]
    assert gauges == [(float(out["balance"]["amount"]), "g")]
    bad = {"vendor": "paasw_v2", "conn_id": "sms_bad", "code": out["vendor_error"]}
    assert total(found, metrics.VENDOR_ERRORS, **bad) == 1

    # a timer per HTTP attempt, in milliseconds, tagged with the operation
    timers = {dict(t).get("operation") for (n, t), _ in found.items() if n == metrics.REQUEST_DURATION}
    assert timers == {"send", "token_request", "delivery_report_pull", "inbound_pull", "balance_query"}
    durations = [v for (n, _), values in found.items() if n == metrics.REQUEST_DURATION for v in values]
    assert all(kind == "ms" and 0 <= value < 60_000 for value, kind in durations)

    # every name sent is one the README documents
    assert {n for n, _ in found if n.startswith(metrics.PREFIX)} <= set(metrics.METRICS)
