"""OpenLineage datasets the operators report after running against the simulator (the openlineage extra)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_provider_sms.operators import (
    SmsBalanceOperator,
    SmsInboundSyncOperator,
    SmsReportsSyncOperator,
    SmsSendOperator,
)
from airflow_provider_sms.operators.sync import BALANCE_COLUMNS, REPORT_COLUMNS
from airflow_provider_sms.simulator import GatewaySimulator
from airflow_provider_sms.testing import task_context

pytestmark = pytest.mark.integration
pytest.importorskip("airflow.providers.openlineage", reason="the openlineage extra is not installed")

REPO = Path(__file__).resolve().parents[2]


def vendor(sim: GatewaySimulator, name: str) -> tuple[str, str, str]:
    """(namespace, account, secret) of the simulated account."""
    conn = json.loads(sim.connection_json(name))
    return f"sms://{urlsplit(conn['host']).netloc}", conn["login"], conn["password"]


def pairs(datasets: list[Any]) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


def test_reports_sync_reports_the_vendor_in_and_store_and_warehouse_out(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    warehouse = home / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(warehouse)}))
    SmsSendOperator(
        task_id="send", sms_conn_id="sms_paasw_v2", mobiles=["13800000001"], content="hi", signature="S"
    ).execute(task_context())
    sync = SmsReportsSyncOperator(
        task_id="sync", sms_conn_id="sms_paasw_v2", target_conn_id="warehouse", target_table="dlr"
    )
    sync.execute(task_context())
    lineage = sync.get_openlineage_facets_on_complete(None)
    namespace, account, secret = vendor(sim, "paasw_v2")
    assert pairs(lineage.inputs) == [(namespace, f"{account}/reports")]
    store = f"sqlite://{home / 'sms_store.db'}"
    assert pairs(lineage.outputs) == [
        (store, "sms_delivery_reports"),
        (store, "sms_requests"),
        (f"sqlite://{warehouse}", "dlr"),
    ]
    schema = lineage.outputs[-1].facets["schema"]
    assert [(f.name, f.type) for f in schema.fields] == [(c, "TEXT") for c in REPORT_COLUMNS]
    assert secret not in repr(lineage)


def test_inbound_and_balance_name_their_endpoints(sim: GatewaySimulator, home: Path) -> None:
    namespace, account, _ = vendor(sim, "account_md5")
    inbound = SmsInboundSyncOperator(task_id="mo", sms_conn_id="sms_account_md5", store_table_prefix="x_")
    inbound.execute(task_context())
    lineage = inbound.get_openlineage_facets_on_complete(None)
    assert pairs(lineage.inputs) == [(namespace, f"{account}/inbound")]
    assert pairs(lineage.outputs) == [(f"sqlite://{home / 'sms_store.db'}", "x_inbound_messages")]

    balance = SmsBalanceOperator(task_id="bal", sms_conn_id="sms_account_md5")
    balance.execute(task_context())
    lineage = balance.get_openlineage_facets_on_complete(None)
    assert pairs(lineage.inputs) == [(namespace, f"{account}/balance")]
    assert pairs(lineage.outputs) == [(f"sqlite://{home / 'sms_store.db'}", "sms_balances")]


def test_a_skipped_sync_reports_no_dataset(sim: GatewaySimulator) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    sync = SmsInboundSyncOperator(task_id="mo", sms_conn_id="sms_intl")  # intl has no inbound API
    with pytest.raises(AirflowSkipException):
        sync.execute(task_context())
    lineage = sync.get_openlineage_facets_on_complete(None)
    assert lineage.inputs == [] and lineage.outputs == []


def test_send_reports_opt_outs_in_and_the_vendor_and_its_store_tables_out(sim: GatewaySimulator, home: Path) -> None:
    send = SmsSendOperator(
        task_id="send", sms_conn_id="sms_intl", mobiles=["8613800138000"], content="hi", signature="S"
    )
    send.execute(task_context())
    lineage = send.get_openlineage_facets_on_complete(None)
    namespace, account, secret = vendor(sim, "intl")
    store = f"sqlite://{home / 'sms_store.db'}"
    assert pairs(lineage.inputs) == [(store, "sms_opt_outs")]
    assert pairs(lineage.outputs) == [
        (namespace, f"{account}/send"),
        (store, "sms_send_plans"),
        (store, "sms_plan_numbers"),
        (store, "sms_requests"),
    ]
    assert secret not in repr(lineage)
    unsent = SmsSendOperator(task_id="s", sms_conn_id="sms_intl", mobiles=["8613800138000"], content="hi")
    assert unsent.get_openlineage_facets_on_complete(None).outputs == []


@pytest.mark.postgres
def test_a_postgres_warehouse_is_named_as_common_sql_names_it(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = os.environ.get("SMS_TEST_POSTGRES_URI", "")
    if not uri:
        pytest.skip("PostgreSQL tests need SMS_TEST_POSTGRES_URI")
    monkeypatch.setenv("AIRFLOW_CONN_SMS_LINEAGE_PG", uri)
    parts = urlsplit(uri)
    table = "lineage_balance_test"
    balance = SmsBalanceOperator(
        task_id="bal", sms_conn_id="sms_paasw_v2", target_conn_id="sms_lineage_pg", target_table=table
    )
    try:
        balance.execute(task_context())
        lineage = balance.get_openlineage_facets_on_complete(None)
    finally:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        PostgresHook(postgres_conn_id="sms_lineage_pg").run(f"DROP TABLE IF EXISTS {table}")
    target = lineage.outputs[-1]
    assert (target.namespace, target.name) == (
        f"postgres://{parts.hostname}:{parts.port or 5432}",
        f"{parts.path.lstrip('/')}.public.{table}",
    )
    assert [f.name for f in target.facets["schema"].fields] == list(BALANCE_COLUMNS)
    assert f":{parts.password}@" not in repr(lineage)  # the connection's credentials stay out


def test_without_the_openlineage_provider_there_is_no_lineage_and_no_error(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync = SmsBalanceOperator(task_id="bal", sms_conn_id="sms_paasw_v2")
    sync.execute(task_context())
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage.extractors", None)  # import fails
    assert sync.get_openlineage_facets_on_complete(None) is None


def test_parsing_a_dag_imports_no_openlineage() -> None:
    """Airflow's provider discovery reads the provider's info; the client and extractors stay unimported."""
    code = (
        "import sys, airflow_provider_sms.operators, airflow_provider_sms.hooks; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'openlineage' or m in "
        "('airflow.providers.openlineage.extractors', 'airflow_provider_sms.lineage')))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert child.stdout.strip().splitlines()[-1] == "[]"


def test_a_send_that_failed_over_names_every_connection_that_carried_numbers(
    sim: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = {
        **json.loads(sim.connection_json("paasw_v2", retry_wait=0.01, retries=0, sign="S")),
        "host": "http://127.0.0.1:9",
    }
    monkeypatch.setenv("AIRFLOW_CONN_SMS_DOWN", json.dumps(down))
    send = SmsSendOperator(
        task_id="send",
        sms_conn_id="sms_down",
        fallback_conn_ids=["sms_paasw_v1", "sms_cloud_mas"],
        mobiles=["13800138000"],
        content="hi",
    )
    send.execute(task_context())
    outputs = [name for _, name in pairs(send.get_openlineage_facets_on_complete(None).outputs)]
    primary_account, fallback_account = down["login"], vendor(sim, "paasw_v1")[1]
    assert outputs[:2] == [f"{primary_account}/send", f"{fallback_account}/send"]  # not cloud_mas: it sent nothing
    assert len([name for name in outputs if name.endswith("/send")]) == 2
