"""SQL names are refused clearly when the author gives them: at DAG parse time, not at execute."""

from __future__ import annotations

import pytest

from airflow_provider_sms.errors import SmsConfigurationError
from airflow_provider_sms.identifiers import check_columns, check_table, check_table_prefix
from airflow_provider_sms.notifications import SmsNotifier
from airflow_provider_sms.operators import SmsReportsSyncOperator, SmsSendOperator
from airflow_provider_sms.receiver.app import ReceiverSettings
from airflow_provider_sms.sensors import SmsDeliverySensor
from airflow_provider_sms.warehouse import upsert_rows


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ("order", "reserved word"),
        ("Select", "reserved word"),
        ("analytics.user", "reserved word"),
        ("a.b.c", "a schema and a table"),
        ("sqlite_master", "sqlite_ namespace"),
        ("sms reports", "letters, digits and underscores"),
        ("reports; DROP TABLE x", "letters, digits and underscores"),
        ("1reports", "letters, digits and underscores"),
        ("r" * 64, "longer than 63"),
        ("", "letters, digits and underscores"),
    ],
)
def test_bad_table_names_are_refused_naming_the_problem(table: str, problem: str) -> None:
    with pytest.raises(SmsConfigurationError, match=problem):
        check_table(table)
    with pytest.raises(SmsConfigurationError, match=problem):  # at construction: DAG parse time
        SmsReportsSyncOperator(task_id="t", sms_conn_id="c", target_conn_id="w", target_table=table)


def test_good_table_names_and_templates_pass_construction() -> None:
    assert check_table("analytics.sms_reports") == "analytics.sms_reports"
    SmsReportsSyncOperator(task_id="t", sms_conn_id="c", target_conn_id="w", target_table="{{ params.table }}")


@pytest.mark.parametrize("prefix", ["sms-", "order by", "sqlite_", "x" * 42, ""])
def test_bad_store_prefixes_are_refused_by_every_author_facing_class(prefix: str) -> None:
    with pytest.raises(SmsConfigurationError, match="table_prefix"):
        check_table_prefix(prefix)
    builders = [
        lambda: SmsSendOperator(task_id="s", sms_conn_id="c", mobiles=["1"], content="x", store_table_prefix=prefix),
        lambda: SmsReportsSyncOperator(task_id="r", sms_conn_id="c", store_table_prefix=prefix),
        lambda: SmsDeliverySensor(task_id="d", sms_conn_id="c", batch_ids=["1"], store_table_prefix=prefix),
        lambda: SmsNotifier(sms_conn_id="c", mobiles=["1"], text="x", store_table_prefix=prefix),
        lambda: ReceiverSettings(store_table_prefix=prefix),
    ]
    for build in builders:
        with pytest.raises(SmsConfigurationError, match="table_prefix"):
            build()


@pytest.mark.parametrize(
    ("columns", "key", "problem"),
    [
        (["mobile", "order"], ["mobile"], "reserved word"),
        (["mobile", "x; --"], ["mobile"], "letters, digits"),
        (["mobile", "mobile"], ["mobile"], "repeat"),
        (["mobile"], ["batch_id"], "one or more of the columns"),
        (["mobile"], [], "one or more of the columns"),
    ],
)
def test_upsert_columns_and_key_are_checked_before_any_connection(
    columns: list[str], key: list[str], problem: str
) -> None:
    with pytest.raises(SmsConfigurationError, match=problem):
        check_columns(columns, key)
    with pytest.raises(SmsConfigurationError, match=problem):
        upsert_rows("no_such_conn", "reports", columns, key, [("1",) * len(columns)])
