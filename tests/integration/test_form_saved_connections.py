"""Connections as Airflow's form saves them, against the simulator: every field left empty stored as
``null``, and the port filled in (what the Test button needs), for each of the five connection types."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_provider_sms.hooks import hook_class_for_conn_type
from airflow_provider_sms.hooks.base import BALANCE, INBOUND, REPORTS
from airflow_provider_sms.hooks.cloud_mas import CloudMasHook
from airflow_provider_sms.provider_info import CONNECTION_TYPES
from airflow_provider_sms.records import DELIVERED
from airflow_provider_sms.simulator import GatewaySimulator
from airflow_provider_sms.testing import VENDORS

pytestmark = pytest.mark.integration

FORM_FIELDS = {entry["connection-type"]: list(entry["conn-fields"]) for entry in CONNECTION_TYPES}
MOBILE = {"intl": "8613800138000"}


def form_saved(sim: GatewaySimulator, vendor: str) -> dict[str, Any]:
    """The simulated account's connection with every other form field null and the URL's port stored."""
    conn: dict[str, Any] = json.loads(sim.connection_json(vendor))
    conn_type = conn["conn_type"]
    conn["extra"] = {name: conn["extra"].get(name) for name in FORM_FIELDS[conn_type]}
    conn["extra"]["retry_wait"] = 0.01
    conn["port"] = urlsplit(conn["host"]).port
    return conn


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_form_saved_connection_sends_and_reads(
    sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch, vendor: str
) -> None:
    monkeypatch.setattr(CloudMasHook, "pull_interval", 0.0)
    conn = form_saved(sms_simulator, vendor)
    nulls = [name for name, value in conn["extra"].items() if value is None]
    assert len(nulls) >= 6, nulls  # most of the form is left empty
    conn_id = f"sms_form_{vendor}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))

    hook = hook_class_for_conn_type(conn["conn_type"])(sms_conn_id=conn_id)
    assert hook.config.base_url == conn["host"]
    mobile = MOBILE.get(vendor, "13800138000")
    (receipt,) = hook.send(mobile, "hello from a form-saved connection", signature=conn["extra"]["sign"] or "Acme")
    assert receipt.mobiles == (mobile,)
    if hook.supports(REPORTS):
        pairs = [(receipt.batch_id, mobile)]
        reports = hook.fetch_reports(pairs if hook.report_mode == "query" else None)
        assert [r.status for r in reports] == [DELIVERED]
    if hook.supports(INBOUND):
        assert hook.fetch_inbound() == []
    if hook.supports(BALANCE):
        assert hook.get_balance().amount > 0
