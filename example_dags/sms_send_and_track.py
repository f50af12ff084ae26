"""Send a batch, wait until every number has a delivery report, then write a summary.

Runs against any SMS connection (all five types): pick it when you trigger the DAG, with the
``sms_conn_id`` param (``airflow dags test sms_send_and_track -c '{"sms_conn_id": "sms_intl"}'``),
or set its default with the ``SMS_CONN_ID`` environment variable. The send passes only the text:
what differs per account (the signature, the message kind) comes from the connection's extras
(``sign``, ``product_id`` / ``kind``), so no vendor refuses an option it does not have. The quick
start points ``sms_paasw_v2`` at the bundled simulator.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_sms.operators import SmsSendOperator
from airflow_provider_sms.sensors import SmsDeliverySensor

with DAG(
    dag_id="sms_send_and_track",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["sms", "example"],
    params={
        "sms_conn_id": Param(
            os.environ.get("SMS_CONN_ID", "sms_paasw_v2"), type="string", description="Any sms_* connection"
        ),
        "recipients": Param(2500, type="integer", minimum=1, description="How many demo numbers to send to"),
        "warehouse_conn_id": Param("sms_warehouse", type="string", description="common.sql connection"),
    },
) as dag:

    @task
    def recipients(params: dict[str, Any]) -> list[str]:
        """Demo numbers; in a real DAG they come from a query or an upstream task.

        Written with +86, which every connection reads: the domestic vendors drop it, intl reads every
        number as its country code and number (a bare 13800000000 would be +1 380 000 0000 there).
        """
        return [f"+86 138{i:08d}" for i in range(int(params["recipients"]))]

    send = SmsSendOperator(
        task_id="send",
        sms_conn_id="{{ params.sms_conn_id }}",
        mobiles=recipients(),
        content="您的订单已发货，请注意查收。",
    )

    wait = SmsDeliverySensor(
        task_id="wait_for_delivery",
        sms_conn_id="{{ params.sms_conn_id }}",
        send_task_id="send",
        min_delivered_share=0.5,
        poke_interval=2,
        timeout=600,
        deferrable=True,
        # Waiting is safe to repeat (a retry only checks the store and the vendor again), so one retry
        # rides out a worker lost mid-wait, and Airflow 3.3's race where a trigger that fires within
        # seconds of the deferral fails the resumed sensor (apache/airflow#72716).
        retries=1,
        retry_delay=timedelta(seconds=5),
    )

    @task
    def write_summary(outcome: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        """One row per run in the warehouse: what was sent and what became of it."""
        from airflow.sdk import get_current_context

        from airflow_provider_sms.warehouse import upsert_rows

        run_id = get_current_context()["run_id"]
        by_status = outcome["by_status"]
        row = (
            run_id,
            outcome["conn_id"],
            outcome["vendor"],
            outcome["total"],
            by_status.get("delivered", 0),
            by_status.get("failed", 0),
            by_status.get("pending", 0),
        )
        upsert_rows(
            params["warehouse_conn_id"],
            "sms_send_summary",
            ("run_id", "conn_id", "vendor", "total", "delivered", "failed", "pending"),
            ("run_id",),
            [row],
        )
        print(f"summary: {outcome}")
        return outcome

    send >> wait
    write_summary(wait.output)
