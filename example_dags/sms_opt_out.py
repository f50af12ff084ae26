"""Event-driven: whenever someone replies ``TD`` / ``T`` / ``退订`` / ``STOP``, add the number to the opt-out list.

An ``AssetWatcher`` runs ``SmsInboundTrigger`` in the triggerer: it pulls the vendor's reply queue
into the message store (replies pushed to the receiver land in the same table) and fires one asset
event per opt-out reply, with the message as the event's payload. Each event (or several, if they
arrive together) starts a run of this DAG, whose task adds the senders to the store's opt-out
table; from then on ``SmsSendOperator`` leaves them out and says how many it left out.

The task is idempotent, so a re-run adds nothing twice. A failure pages the on-call phone, once per
ten minutes however many tasks fail.

Runs with any connection type that has inbound messages (``sms_paasw_v2``, ``sms_paasw_v1``,
``sms_account_md5``, ``sms_cloud_mas``; intl has none). The watcher is built when the DAG file is
parsed, so the connection comes from the ``SMS_CONN_ID`` environment variable of the DAG processor
and triggerer (default ``sms_paasw_v2``), not from a run's params.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_sms.notifications import SmsNotifier
from airflow_provider_sms.opt_out import DEFAULT_OPT_OUT_KEYWORDS
from airflow_provider_sms.triggers.inbound import SmsInboundTrigger

SMS_CONN_ID = os.environ.get("SMS_CONN_ID", "sms_paasw_v2")
STORE_CONN_ID = None  # the embedded store; use a PostgreSQL connection when workers are on several machines

opt_out_replies = Asset(
    "sms_opt_out_replies",
    watchers=[
        AssetWatcher(
            name=f"{SMS_CONN_ID}_opt_out_replies",
            trigger=SmsInboundTrigger(
                sms_conn_id=SMS_CONN_ID,
                store_conn_id=STORE_CONN_ID,
                keywords=DEFAULT_OPT_OUT_KEYWORDS,
                poll_interval=30,
            ),
        )
    ],
)

with DAG(
    dag_id="sms_opt_out",
    schedule=[opt_out_replies],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["sms", "example", "event-driven"],
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "on_failure_callback": SmsNotifier(
            sms_conn_id=SMS_CONN_ID,
            mobiles=["13800000000"],
            text="{{ dag.dag_id }}.{{ ti.task_id }} failed: {{ exception }}",
        ),
    },
) as dag:

    @task
    def record_opt_outs(triggering_asset_events: Any = None) -> dict[str, Any]:
        """Add the senders of this run's opt-out replies to the opt-out table; counts go to XCom."""
        from airflow_provider_sms.opt_out import opt_outs_from_asset_events

        return opt_outs_from_asset_events(
            triggering_asset_events, store_conn_id=STORE_CONN_ID, keywords=DEFAULT_OPT_OUT_KEYWORDS
        )

    record_opt_outs()
