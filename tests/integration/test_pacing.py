"""An account's pace is kept by every task and worker that shares the store: the vendor's QPS, counted
at the simulator as requests arrive."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from airflow_provider_sms.operators import SmsSendOperator
from airflow_provider_sms.simulator import GatewaySimulator
from airflow_provider_sms.testing import FakeTaskInstance, task_context

pytestmark = pytest.mark.integration


def test_concurrent_sends_keep_the_account_request_rate(
    sms_simulator: GatewaySimulator,
    sms_connections: dict[str, str],
    store_args: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conn = json.loads(sms_simulator.connection_json("paasw_v2", retry_wait=0.01))
    conn["extra"]["max_requests_per_second"] = 20
    monkeypatch.setenv("AIRFLOW_CONN_SMS_PACED", json.dumps(conn))
    mobiles = [f"138{i:08d}" for i in range(30_000)]

    def send(task_id: str) -> dict[str, Any]:
        return dict(
            SmsSendOperator(
                task_id=task_id,
                sms_conn_id="sms_paced",
                mobiles=mobiles,
                content="hi",
                signature="S",
                max_concurrency=4,
                **store_args,
            ).execute(task_context(FakeTaskInstance(task_id=task_id)))
        )

    start = time.monotonic()
    summaries = [send("first"), send("second")]  # two tasks, one account: one pace
    elapsed = time.monotonic() - start
    assert [s["accepted_numbers"] for s in summaries] == [30_000, 30_000]
    requests = sum(sms_simulator.gateway.stats()["requests"].values())
    assert requests >= 61  # a token, then 30 sends per task
    # slots are booked 1/20 s apart at departure; a loaded machine jitters arrivals, so a one-second
    # window may catch a few more (unpaced, 4 threads send all 61 within a second)
    assert sms_simulator.gateway.busiest_second("paasw_v2") <= 25
    assert elapsed >= (requests - 1) / 20 - 0.1
