"""A template send to a large list, fanned out over recipient chunks with dynamic task mapping.

Each mapped task instance is idempotent on its own: a retry of chunk 7 resends nothing chunk 7
already sent, and no other chunk is touched.

Runs against the template vendors whose templates take named variables: ``sms_paasw_v2`` and
``sms_paasw_v1``. Pick the connection with the ``sms_conn_id`` param (default: the ``SMS_CONN_ID``
environment variable, else ``sms_paasw_v2``). The message kind is the template's (paasw_v1) or the
connection's ``product_id`` extra (paasw_v2), and the signature the connection's ``sign`` extra.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_sms.operators import SmsSendOperator
from airflow_provider_sms.sensors import SmsDeliverySensor

with DAG(
    dag_id="sms_template_mapped",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["sms", "example"],
    params={
        "sms_conn_id": Param(
            os.environ.get("SMS_CONN_ID", "sms_paasw_v2"),
            type="string",
            description="An sms_paasw_v2 or sms_paasw_v1 connection",
        ),
        "recipients": Param(12_000, type="integer", minimum=1, description="How many demo numbers to send to"),
        "chunk_size": Param(5000, type="integer", minimum=1, description="Numbers per mapped send task"),
    },
) as dag:

    @task
    def recipient_chunks(params: dict[str, Any]) -> list[list[str]]:
        numbers = [f"139{i:08d}" for i in range(int(params["recipients"]))]
        size = int(params["chunk_size"])
        return [numbers[i : i + size] for i in range(0, len(numbers), size)]

    send = SmsSendOperator.partial(
        task_id="send_template",
        sms_conn_id="{{ params.sms_conn_id }}",
        template_id="4289538897476608",
        template_params={"code": "523648", "minute": "2"},
    ).expand(mobiles=recipient_chunks())

    wait = SmsDeliverySensor(
        task_id="wait_for_delivery",
        sms_conn_id="{{ params.sms_conn_id }}",
        send_task_id="send_template",
        poke_interval=2,
        timeout=600,
        mode="reschedule",
    )
    send >> wait
