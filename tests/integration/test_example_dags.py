"""The example DAGs load without import errors and run green under ``airflow dags test`` against the
simulator with every connection type they claim (a real Airflow metadata database in a throwaway
AIRFLOW_HOME; one ``airflow dags test`` process per DAG and connection, judged by the DAG run's own
final state in that database)."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from airflow.sdk import DAG

from airflow_provider_sms.simulator import GatewaySimulator, SimConfig
from airflow_provider_sms.testing import VENDORS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = ROOT / "example_dags"
EXAMPLES = sorted(DAGS_FOLDER.glob("*.py"))
INBOUND_VENDORS = ("paasw_v2", "paasw_v1", "account_md5", "cloud_mas")  # intl has no inbound API


class Case(NamedTuple):
    """One ``airflow dags test`` run: a DAG, the connection it runs with, and how it is given that connection."""

    dag_id: str
    vendor: str
    conf: dict[str, Any] | None = None
    env: dict[str, str] | None = None

    @property
    def id(self) -> str:
        return f"{self.dag_id}-{self.vendor}"


# What each example claims in its docstring; the order is the run order (report sync last: it copies what the
# others stored). sms_report_sync maps over all five connections in one run.
CASES = [
    *(Case("sms_send_and_track", v, {"sms_conn_id": f"sms_{v}", "recipients": 300}) for v in VENDORS),
    *(
        Case("sms_template_mapped", v, {"sms_conn_id": f"sms_{v}", "recipients": 1200, "chunk_size": 500})
        for v in ("paasw_v2", "paasw_v1")
    ),
    *(Case("sms_opt_out", v, env={"SMS_CONN_ID": f"sms_{v}"}) for v in INBOUND_VENDORS),
    # the campaign on a working primary, and on one that refuses connections (everything fails over)
    Case("sms_marketing_campaign", "paasw_v1", {"sms_conn_id": "sms_paasw_v1", "fallback_conn_id": "sms_cloud_mas"}),
    Case(
        "sms_marketing_campaign", "unreachable", {"sms_conn_id": "sms_unreachable", "fallback_conn_id": "sms_paasw_v2"}
    ),
    Case("sms_report_sync", "all"),
]


def quiet_hours_away_from_now() -> str:
    """A quiet window on the recipients' clock (Asia/Shanghai) that opens 6 hours from now and lasts one: the
    campaign's gate checks it for real, and no run of the check falls inside it whatever the time of day."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    return f"{(now + timedelta(hours=6)):%H:%M}-{(now + timedelta(hours=7)):%H:%M}"


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
    assert path.stem in {case.dag_id for case in CASES}, "an example DAG that CI does not run"


@pytest.fixture(scope="module")
def simulator(sms_simulator_server: GatewaySimulator) -> GatewaySimulator:
    """The session's simulator, reset once for this module: the runs share its queues, in order."""
    sms_simulator_server.gateway.config = SimConfig(report_delay=0.5, failure_rate=0.05, pull_interval=0.0)
    sms_simulator_server.gateway.reset()
    return sms_simulator_server


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory, simulator: GatewaySimulator) -> dict[str, str]:
    """A migrated metadata database, and the five example connections pointing at the simulator."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW_CONN_SMS_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(home / "warehouse.db")}),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    env.pop("SMS_CONN_ID", None)
    env.pop("SMS_CONN_IDS", None)
    for vendor in VENDORS:
        # priced, so that the campaign's dry run estimates a cost
        env[f"AIRFLOW_CONN_SMS_{vendor.upper()}"] = simulator.demo_connection_json(
            vendor, price_per_part="0.045", currency="CNY"
        )
    unreachable = json.loads(simulator.demo_connection_json("paasw_v2", retries=0, price_per_part="0.045"))
    unreachable["host"] = f"http://127.0.0.1:{closed_port()}"
    env["AIRFLOW_CONN_SMS_UNREACHABLE"] = json.dumps(unreachable)
    env["SMS_QUIET_HOURS"] = quiet_hours_away_from_now()
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


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def dag_runs(env: dict[str, str], dag_id: str) -> list[tuple[int, str]]:
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as db:
        return [(int(i), str(s)) for i, s in db.execute("SELECT id, state FROM dag_run WHERE dag_id = ?", (dag_id,))]


def dags_test(env: dict[str, str], dag_id: str, conf: dict[str, Any] | None = None) -> str:
    """Run ``airflow dags test``; the new DAG run's own state in the metadata database must be success."""
    before = {run_id for run_id, _ in dag_runs(env, dag_id)}
    command = [sys.executable, "-m", "airflow", "dags", "test", dag_id]
    if conf is not None:
        command += ["--conf", json.dumps(conf)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    output = result.stdout + result.stderr
    new = [state for run_id, state in dag_runs(env, dag_id) if run_id not in before]
    assert new == ["success"], f"DAG runs {new}, exit code {result.returncode}:\n{output[-6000:]}"
    assert result.returncode == 0, output[-6000:]
    return output


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_example_dag_runs_green(case: Case, simulator: GatewaySimulator, airflow_env: dict[str, str]) -> None:
    env = {**airflow_env, **(case.env or {})}
    home = Path(env["AIRFLOW_HOME"])
    if case.dag_id == "sms_report_sync":
        simulator.gateway.add_inbound("paasw_v2", "13800000001", "TD")
    output = dags_test(env, case.dag_id, case.conf)
    assert "Skipping masking for a secret as it's too short" not in output  # 模拟签名 is 4 characters

    if case.dag_id == "sms_send_and_track":
        with sqlite3.connect(home / "warehouse.db") as db:
            vendor, total, delivered, failed, pending = db.execute(
                "SELECT vendor, total, delivered, failed, pending FROM sms_send_summary ORDER BY rowid DESC"
            ).fetchone()
        assert (vendor, int(total), int(pending)) == (case.vendor, 300, 0)
        assert int(delivered) + int(failed) == 300
    if case.dag_id == "sms_marketing_campaign":
        summary = xcom(home, "sms_marketing_campaign", "send")
        assert summary["accepted_numbers"] == 3000 and summary["canary"]["passed"] is True
        carried = {c["conn_id"]: c["accepted_numbers"] for c in summary["connections"]}
        if case.vendor == "unreachable":  # everything moved on, once
            assert carried == {"sms_unreachable": 0, "sms_paasw_v2": 3000}
        else:
            assert carried == {"sms_paasw_v1": 3000}
        assert xcom(home, "sms_marketing_campaign", "check_budget")["estimated_cost"] == "135.000"  # 3000 × 0.045
        assert xcom(home, "sms_marketing_campaign", "wait_for_delivery")["total"] == 3000
    if case.dag_id == "sms_report_sync":
        with sqlite3.connect(home / "warehouse.db") as db:
            reports = db.execute("SELECT vendor, count(*) FROM sms_delivery_reports GROUP BY vendor").fetchall()
            inbound = db.execute("SELECT mobile, content FROM sms_inbound_messages").fetchall()
            balances = db.execute("SELECT DISTINCT vendor FROM sms_balances").fetchall()
        # the sensors stored every report of their runs; the sync copied them once
        # send-and-track 300 each; template-mapped 1,200 on both paasw; the campaign 3,000 on paasw_v1 and,
        # failed over from the unreachable primary, 3,000 on paasw_v2
        campaign = 1200 + 3000
        assert dict(reports) == {
            "paasw_v2": 300 + campaign,
            "paasw_v1": 300 + campaign,
            **{v: 300 for v in VENDORS[2:]},
        }
        assert inbound == [("13800000001", "TD")]
        assert {v for (v,) in balances} == {"paasw_v2", "paasw_v1", "intl", "account_md5"}  # cloud_mas has none
        # skipped mapped tasks say why, and every mapped task is labelled with its connection
        assert "sms_intl: skipped, the intl gateway has no inbound (MO) messages API" in output
        with sqlite3.connect(home / "airflow.db") as db:
            labels = dict(
                db.execute(
                    "SELECT rendered_map_index, state FROM task_instance WHERE dag_id = ? AND task_id = ?",
                    ("sms_report_sync", "sync_inbound"),
                ).fetchall()
            )
        assert labels == {f"sms_{v}": "skipped" if v == "intl" else "success" for v in VENDORS}

        dags_test(env, "sms_report_sync")  # a second sync adds no row
        with sqlite3.connect(home / "warehouse.db") as db:
            assert db.execute("SELECT vendor, count(*) FROM sms_delivery_reports GROUP BY vendor").fetchall() == reports


def xcom(home: Path, dag_id: str, task_id: str) -> Any:
    """The return value the task pushed in the DAG's latest run, from the metadata database."""
    with sqlite3.connect(home / "airflow.db") as db:
        (value,) = db.execute(
            """SELECT x.value FROM xcom x JOIN dag_run r ON r.id = x.dag_run_id
            WHERE x.dag_id = ? AND x.task_id = ? AND x.key = 'return_value' ORDER BY r.id DESC LIMIT 1""",
            (dag_id, task_id),
        ).fetchone()
    return json.loads(value)
