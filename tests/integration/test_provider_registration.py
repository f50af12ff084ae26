"""The installed package registers as an Airflow provider with its five connection types and forms."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_sms.hooks import HOOK_BY_CONN_TYPE, hook_class_for_conn_type
from airflow_provider_sms.provider_info import PROVIDER_INFO

pytestmark = pytest.mark.integration


def test_provider_info_names_every_hook_class() -> None:
    types = {c["connection-type"]: c for c in PROVIDER_INFO["connection-types"]}
    assert set(types) == set(HOOK_BY_CONN_TYPE)
    for conn_type, entry in types.items():
        hook_class = hook_class_for_conn_type(conn_type)
        assert entry["hook-class-name"] == f"{hook_class.__module__}.{hook_class.__qualname__}"
        assert hook_class.conn_type == conn_type and hook_class.hook_name == entry["hook-name"]
        for name, field in entry["conn-fields"].items():
            assert field["label"] and field["schema"]["type"], (conn_type, name)


def test_airflow_lists_the_provider_and_its_forms(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    listed = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list"], env=env, capture_output=True, text=True, check=False
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "airflow-provider-sms" in listed.stdout

    script = """
from airflow.providers_manager import ProvidersManager
pm = ProvidersManager()
meta = {m.connection_type: m for m in pm.iter_connection_type_hook_ui_metadata()}
widgets = pm._connection_form_widgets_from_metadata
print(meta["sms_cloud_mas"].field_behaviour["relabeling"]["password"])
print(sorted(k for k in widgets if k.startswith("extra__sms_cloud_mas__")))
"""
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-2] == "secretKey"
    for field in ("ec_name", "sign", "add_serial", "verify", "timezone", "timeout"):
        assert f"extra__sms_cloud_mas__{field}" in lines[-1]


def test_the_ui_hook_meta_shows_port_and_single_type_fields(tmp_path: Path) -> None:
    """What the UI's form is built from (GET /ui/connections/hook_meta): port shown, one type per field."""
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    script = """
import json
from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
out = {}
for meta in HookMetaService.hook_meta_data():
    if meta.connection_type.startswith("sms_"):
        port = meta.standard_fields.port
        out[meta.connection_type] = {
            "port_hidden": port.hidden, "port_placeholder": port.placeholder,
            "types": {k: v["schema"]["type"] for k, v in meta.extra_fields.items()},
            "values": {k: v["value"] for k, v in meta.extra_fields.items()},
        }
print(json.dumps(out))
"""
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    forms = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(forms) == set(HOOK_BY_CONN_TYPE)
    for conn_type, form in forms.items():
        assert form["port_hidden"] is False and form["port_placeholder"].isdigit(), conn_type
        for name, types in form["types"].items():
            assert len([t for t in types if t != "null"]) == 1, (conn_type, name, types)
        assert form["types"]["timeout"] == ["number", "null"] and form["values"]["timeout"] == 30
        assert form["types"]["retries"] == ["integer", "null"] and form["values"]["retries"] == 3
    assert forms["sms_cloud_mas"]["values"]["verify"] == "false"


def test_connection_uri_resolves_to_the_vendor_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import BaseHook

    from airflow_provider_sms.hooks import get_sms_hook

    monkeypatch.setenv("AIRFLOW_CONN_SMS_URI", "sms-paasw-v2://app:s3cret@gateway.example.com?product_id=1")
    assert BaseHook.get_connection("sms_uri").conn_type == "sms_paasw_v2"
    hook = get_sms_hook("sms_uri")
    assert type(hook).__name__ == "PaaswV2Hook"
    assert hook.config.base_url == "http://gateway.example.com"
    assert "s3cret" not in repr(hook.config)
