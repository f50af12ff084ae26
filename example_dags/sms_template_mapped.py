"""A template send to a large list, fanned out over recipient chunks with dynamic task mapping.

Each mapped task instance is idempotent on its own: a retry of chunk 7 resends nothing chunk 7
already sent, and no other chunk is touched.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

from airflow_provider_sms.operators import SmsSendOperator
from airflow_provider_sms.sensors import SmsDeliverySensor

CHUNK_SIZE = 5000

with DAG(
    dag_id="sms_template_mapped",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["sms", "example"],
) as dag:

    @task
    def recipient_chunks() -> list[list[str]]:
        numbers = [f"139{i:08d}" for i in range(12_000)]
        return [numbers[i : i + CHUNK_SIZE] for i in range(0, len(numbers), CHUNK_SIZE)]

    send = SmsSendOperator.partial(
        task_id="send_template",
        sms_conn_id="sms_paasw_v2",
        template_id="4289538897476608",
        template_params={"code": "523648", "minute": "2"},
        kind="verification",
    ).expand(mobiles=recipient_chunks())

    wait = SmsDeliverySensor(
        task_id="wait_for_delivery",
        sms_conn_id="sms_paasw_v2",
        send_task_id="send_template",
        poke_interval=2,
        timeout=600,
        mode="reschedule",
    )
    send >> wait
