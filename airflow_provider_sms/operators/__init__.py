"""Vendor-neutral SMS operators; importing them costs little beyond ``airflow.sdk`` (hooks load at execution)."""

from airflow_provider_sms.operators.send import SmsSendOperator
from airflow_provider_sms.operators.sync import (
    SmsBalanceOperator,
    SmsInboundSyncOperator,
    SmsReportsSyncOperator,
)

__all__ = ["SmsBalanceOperator", "SmsInboundSyncOperator", "SmsReportsSyncOperator", "SmsSendOperator"]
