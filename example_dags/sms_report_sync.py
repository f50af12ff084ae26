"""Every few minutes: delivery reports, inbound replies and balances of every SMS connection into warehouse tables.

Reports and replies go through the message store first (vendors hand each out once), then new and
changed rows are upserted into the warehouse, so a re-run adds no row. Vendors without inbound or
balance APIs skip those tasks, saying why. Each mapped task is labelled with its connection id.

The connections are the five example ones, any of the five types; set ``SMS_CONN_IDS`` (comma-separated)
to sync others.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_sms.operators import SmsBalanceOperator, SmsInboundSyncOperator, SmsReportsSyncOperator

SMS_CONNECTIONS = [
    conn_id.strip()
    for conn_id in os.environ.get(
        "SMS_CONN_IDS", "sms_paasw_v2,sms_paasw_v1,sms_intl,sms_account_md5,sms_cloud_mas"
    ).split(",")
    if conn_id.strip()
]
WAREHOUSE = "sms_warehouse"

with DAG(
    dag_id="sms_report_sync",
    schedule=timedelta(minutes=5),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["sms", "example"],
) as dag:
    SmsReportsSyncOperator.partial(
        task_id="sync_reports", target_conn_id=WAREHOUSE, target_table="sms_delivery_reports"
    ).expand(sms_conn_id=SMS_CONNECTIONS)

    SmsInboundSyncOperator.partial(
        task_id="sync_inbound", target_conn_id=WAREHOUSE, target_table="sms_inbound_messages"
    ).expand(sms_conn_id=SMS_CONNECTIONS)

    SmsBalanceOperator.partial(task_id="record_balance", target_conn_id=WAREHOUSE, target_table="sms_balances").expand(
        sms_conn_id=SMS_CONNECTIONS
    )
