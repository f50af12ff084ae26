"""A marketing campaign with every guard on: a dry run priced against a budget, quiet hours, a canary, and
safe failover to a second connection; then a wait for delivery on every connection used.

1. ``preview``: a dry run plans the whole send (opt-outs, requests, parts) and prices it from the
   connection's ``price_per_part``; nothing goes to the vendor.
2. ``check_budget``: the campaign stops here when the estimate is above the ``budget`` param.
3. ``send``: the first ``canary`` numbers go out alone; the rest follows only when 90% of theirs were
   delivered. Nobody gets a message inside quiet hours (``SMS_QUIET_HOURS``, default ``21:00-08:00`` on the
   recipients' clock): the task waits for the window in the triggerer. A request the primary surely did not
   accept (it is unreachable, or out of balance) moves to ``fallback_conn_id``; nothing is ever sent twice.
4. ``wait_for_delivery``: follows the batches on every connection the send used.

Runs against the domestic connections (``sms_paasw_v2``, ``sms_paasw_v1``, ``sms_account_md5``,
``sms_cloud_mas``) with any other of them as the fallback: pick them with the ``sms_conn_id`` and
``fallback_conn_id`` params (``airflow dags test sms_marketing_campaign -c '{"sms_conn_id":
"sms_paasw_v1", "fallback_conn_id": "sms_cloud_mas"}'``).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_sms.operators import SmsSendOperator
from airflow_provider_sms.sensors import SmsDeliverySensor

#: the recipients' quiet hours, read when the DAG is parsed (the operator checks the window then)
QUIET_HOURS = os.environ.get("SMS_QUIET_HOURS", "21:00-08:00")
TEXT = "冬季大促：全场八折，回TD退订"

with DAG(
    dag_id="sms_marketing_campaign",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["sms", "example"],
    params={
        "sms_conn_id": Param(os.environ.get("SMS_CONN_ID", "sms_paasw_v2"), type="string"),
        "fallback_conn_id": Param(
            "sms_cloud_mas", type="string", description="Where requests go that the first refused"
        ),
        "recipients": Param(3000, type="integer", minimum=1, description="How many demo numbers to send to"),
        "budget": Param("500", type="string", description="The most the campaign may cost, in the price's currency"),
    },
) as dag:

    @task
    def recipients(params: dict[str, Any]) -> list[str]:
        """Demo numbers; a real campaign selects them from the warehouse."""
        return [f"138{i:08d}" for i in range(int(params["recipients"]))]

    numbers = recipients()

    preview = SmsSendOperator(
        task_id="preview",
        sms_conn_id="{{ params.sms_conn_id }}",
        mobiles=numbers,
        content=TEXT,
        dry_run=True,
    )

    @task
    def check_budget(plan: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        """Stop before anything is sent when the dry run's estimate is above the budget."""
        from airflow.sdk.exceptions import AirflowFailException

        cost, budget = plan["estimated_cost"], Decimal(params["budget"])
        if cost is None:
            print(f"no estimate (the connection has no price_per_part): {plan['total_parts']} SMS parts")
        elif Decimal(cost) > budget:
            raise AirflowFailException(f"the campaign would cost {cost} {plan['currency'] or ''}, above {budget}")
        print(f"preview: {plan['numbers']} numbers, {plan['total_parts']} parts, cost {cost} (budget {budget})")
        return plan

    send = SmsSendOperator(
        task_id="send",
        sms_conn_id="{{ params.sms_conn_id }}",
        fallback_conn_ids=["{{ params.fallback_conn_id }}"],
        mobiles=numbers,
        content=TEXT,
        quiet_hours=QUIET_HOURS,
        canary=500,
        canary_min_delivered=0.9,
        canary_timeout=timedelta(minutes=5),
        max_concurrency=2,
        deferrable=True,  # the canary's wait and quiet hours hand the worker slot back
    )

    wait = SmsDeliverySensor(
        task_id="wait_for_delivery",
        sms_conn_id="{{ params.sms_conn_id }}",
        send_task_id="send",
        min_delivered_share=0.5,
        poke_interval=2,
        timeout=600,
        deferrable=True,
        retries=1,  # safe to repeat; rides out Airflow 3.3's early-trigger race (apache/airflow#72716)
        retry_delay=timedelta(seconds=5),
    )

    @task
    def report(outcome: dict[str, Any]) -> dict[str, Any]:
        print(f"summary: {outcome}")
        return outcome

    check_budget(preview.output) >> send >> wait
    report(wait.output)
