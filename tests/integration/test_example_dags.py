"""The example DAGs load without import errors and run end to end under ``airflow dags test``
against the simulator (a real Airflow metadata database in a throwaway AIRFLOW_HOME)."""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from airflow.sdk import DAG

from airflow_provider_sms.simulator import GatewaySimulator
from airflow_provider_sms.testing import VENDORS

pytestmark = pytest.mark.integration

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "example_dags"
EXAMPLES = sorted(DAGS_FOLDER.glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_dag_imports(path: Path) -> None:
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dags = [value for value in vars(module).values() if isinstance(value, DAG)]
    assert len(dags) == 1
    assert dags[0].dag_id == path.stem
    assert dags[0].task_dict, "an example DAG without tasks"


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A migrated metadata database and connections pointing at the session's simulator."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW_CONN_SMS_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(home / "warehouse.db")}),
    }
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return env


def dags_test(env: dict[str, str], dag_id: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", dag_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "state=success" in output, output[-5000:]
    return output


def test_example_dags_run_end_to_end(sms_simulator: GatewaySimulator, airflow_env: dict[str, str]) -> None:
    sms_simulator.gateway.config.report_delay = 0.5
    sms_simulator.gateway.config.failure_rate = 0.05
    sms_simulator.gateway.config.pull_interval = 5.0
    env = dict(airflow_env)
    for vendor in VENDORS:
        env[f"AIRFLOW_CONN_SMS_{vendor.upper()}"] = sms_simulator.connection_json(vendor)
    home = Path(env["AIRFLOW_HOME"])

    output = dags_test(env, "sms_send_and_track")
    assert "summary:" in output
    with sqlite3.connect(home / "warehouse.db") as db:
        total, delivered, failed, pending = db.execute(
            "SELECT total, delivered, failed, pending FROM sms_send_summary"
        ).fetchone()
    assert (int(total), int(pending)) == (2500, 0)
    assert int(delivered) + int(failed) == 2500 and int(failed) > 0

    dags_test(env, "sms_template_mapped")
    assert sms_simulator.gateway.stats()["accepted_messages"]["paasw_v2"] == 2500 + 12_000

    sms_simulator.gateway.add_inbound("paasw_v2", "13800000001", "TD")
    dags_test(env, "sms_report_sync")
    with sqlite3.connect(home / "warehouse.db") as db:
        reports = db.execute("SELECT count(*) FROM sms_delivery_reports").fetchone()[0]
        inbound = db.execute("SELECT mobile, content FROM sms_inbound_messages").fetchall()
        balances = db.execute("SELECT DISTINCT vendor FROM sms_balances").fetchall()
    assert reports == 2500 + 12_000  # the sensor stored them; the sync copied them once
    assert inbound == [("13800000001", "TD")]
    assert {v for (v,) in balances} == {"paasw_v2", "paasw_v1", "intl", "account_md5"}  # cloud_mas has none

    dags_test(env, "sms_report_sync")  # a second sync adds no row
    with sqlite3.connect(home / "warehouse.db") as db:
        assert db.execute("SELECT count(*) FROM sms_delivery_reports").fetchone()[0] == reports
