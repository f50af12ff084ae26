"""The Python half of ``scripts/airflow-local.sh``: the example connections, the REST calls and the checks.

Every subcommand reads the settings ``airflow-local.sh`` exported (``SMS_LOCAL_URL``, ``SMS_LOCAL_USER``,
``SMS_LOCAL_PASSWORD``, ``SMS_SIMULATOR_URL``, ``SMS_CALLBACK_SECRET``, ``AIRFLOW_CONN_SMS_*``):

* ``connections OUT``: the five example connections (pointing at the simulator; ``sms_paasw_v2`` with push on)
  and ``sms_warehouse`` as an ``airflow connections import`` file;
* ``wait-ready``: until the API server answers and the example DAGs are parsed without import errors;
* ``pusher``: make the simulator push paasw_v2's reports and replies to the API server's ``/sms`` mount, and
  have it push what is due every two seconds (a vendor pushes as soon as it has something);
* ``demo``: trigger ``sms_send_and_track`` and send an opt-out reply ``TD``, so the UI has something to show;
* ``check``: the end-to-end check: a triggered ``sms_send_and_track`` run succeeds (the DAG run's own state,
  from the REST API), its sensor having deferred to the triggerer; its reports came as pushes the receiver
  acknowledged; an opt-out reply pushed to the receiver starts an ``sms_opt_out`` run through the
  AssetWatcher, which succeeds and records the opt-out.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

VENDORS = ("paasw_v2", "paasw_v1", "intl", "account_md5", "cloud_mas")
EXAMPLE_DAGS = (
    "sms_send_and_track",
    "sms_opt_out",
    "sms_report_sync",
    "sms_template_mapped",
    "sms_marketing_campaign",
)
PUSH_CONN = "sms_paasw_v2"
TERMINAL = {"success", "failed"}


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{name} is not set: run this through scripts/airflow-local.sh")
    return value


class Airflow:
    """The REST API (``/api/v2``) as the SimpleAuthManager's user."""

    def __init__(self) -> None:
        self.url = env("SMS_LOCAL_URL").rstrip("/")
        self.session = requests.Session()
        self._token: str | None = None

    def login(self) -> None:
        reply = requests.post(
            f"{self.url}/auth/token",
            json={"username": env("SMS_LOCAL_USER"), "password": env("SMS_LOCAL_PASSWORD")},
            timeout=30,
        )
        reply.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        if "Authorization" not in self.session.headers:
            self.login()
        for attempt in range(5):
            reply = self.session.request(method, f"{self.url}/api/v2{path}", timeout=30, **kwargs)
            if reply.status_code == 401:  # the token expired
                self.login()
            elif reply.status_code < 500:
                break
            # SQLite's "database is locked" when many tasks start at once: the request was rolled back
            time.sleep(2 * (attempt + 1))
        return reply

    def get(self, path: str, **params: Any) -> Any:
        reply = self.call("GET", path, params=params)
        reply.raise_for_status()
        return reply.json()

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        reply = self.call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        if reply.status_code >= 400:
            sys.exit(f"triggering {dag_id} failed: {reply.status_code} {reply.text[:500]}")
        run_id: str = reply.json()["dag_run_id"]
        return run_id

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.get(f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        tis: list[dict[str, Any]] = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return tis


def simulator(method: str, action: str, payload: dict[str, Any] | None = None) -> Any:
    reply = requests.request(method, f"{env('SMS_SIMULATOR_URL')}/_sim/{action}", json=payload, timeout=30)
    reply.raise_for_status()
    return reply.json()


# ------------------------------------------------------------------------------------------------ subcommands


def connections(out: str) -> None:
    result: dict[str, Any] = {}
    for vendor in VENDORS:
        conn = json.loads(env(f"AIRFLOW_CONN_SMS_{vendor.upper()}"))
        if f"sms_{vendor}" == PUSH_CONN:
            conn.setdefault("extra", {})["callback_secret"] = env("SMS_CALLBACK_SECRET")
        # the Base URL's port in Port, so that the UI's Test button works (README, Troubleshooting)
        url = urlsplit(conn["host"])
        conn["port"] = url.port or (443 if url.scheme == "https" else 80)
        conn["extra"] = json.dumps(conn.get("extra") or {})
        result[f"sms_{vendor}"] = conn
    result["sms_warehouse"] = json.loads(env("AIRFLOW_CONN_SMS_WAREHOUSE"))
    Path(out).write_text(json.dumps(result, indent=2), encoding="utf-8")


def wait_ready(timeout: float = 300) -> None:
    airflow = Airflow()
    deadline = time.monotonic() + timeout
    while True:
        try:
            health = requests.get(f"{airflow.url}/api/v2/monitor/health", timeout=10)
            if health.ok:
                break
        except requests.RequestException:  # not listening yet, or still starting up
            pass
        if time.monotonic() > deadline:
            sys.exit(f"the API server did not answer on {airflow.url} within {timeout:.0f} s")
        time.sleep(1)
    if "dag-processor" not in os.environ.get("SMS_LOCAL_COMPONENTS", "dag-processor"):
        return  # nothing parses the DAGs
    while True:
        errors = airflow.get("/importErrors")["import_errors"]
        if errors:
            sys.exit("import errors: " + json.dumps(errors, indent=2)[:3000])
        missing = [d for d in EXAMPLE_DAGS if airflow.call("GET", f"/dags/{d}").status_code != 200]
        if not missing:
            return
        if time.monotonic() > deadline:
            sys.exit(f"DAGs not parsed within {timeout:.0f} s: {missing}")
        time.sleep(1)


def push_url(kind: str) -> str:
    return f"{env('SMS_LOCAL_URL')}/sms/callbacks/{PUSH_CONN}/{kind}?secret={env('SMS_CALLBACK_SECRET')}"


def pusher() -> None:
    vendor = PUSH_CONN.removeprefix("sms_")
    for kind in ("reports", "inbound"):
        simulator("POST", "push-config", {"vendor": vendor, "kind": kind, "url": push_url(kind)})
    print(f"{vendor} pushes its reports and replies to {env('SMS_LOCAL_URL')}/sms/callbacks/{PUSH_CONN}/", flush=True)
    while True:
        try:
            pushes = simulator("POST", "push", {"vendor": vendor})["pushes"]
        except requests.RequestException as exc:
            print(f"push failed: {exc}", flush=True)
        else:
            for push in pushes:
                print(
                    f"pushed {push['records']} {push['kind']}: HTTP {push['status']}, "
                    f"acknowledged={push['acknowledged']} {push['error'] or ''}",
                    flush=True,
                )
        time.sleep(2)


def demo() -> None:
    airflow = Airflow()
    run_id = airflow.trigger("sms_send_and_track", {"sms_conn_id": PUSH_CONN, "recipients": 500})
    simulator("POST", "inbound", {"vendor": PUSH_CONN.removeprefix("sms_"), "mobile": "13800138000", "content": "TD"})
    print(f"triggered sms_send_and_track ({run_id}); an opt-out reply TD from 13800138000 is on its way")


def wait_for_run(airflow: Airflow, dag_id: str, run_id: str, timeout: float, watch: str | None = None) -> set[str]:
    """Poll until the run ends; return the states the task ``watch`` was seen in (with its triggerer)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while True:
        state = airflow.run_state(dag_id, run_id)
        if watch:
            for ti in airflow.task_instances(dag_id, run_id):
                if ti["task_id"] == watch and ti["state"]:
                    seen.add(ti["state"])
                    if ti["state"] == "deferred" and ti.get("triggerer_job"):
                        seen.add(f"deferred in triggerer job {ti['triggerer_job']['id']}")
        if state in TERMINAL:
            if state != "success":
                states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances(dag_id, run_id)}
                sys.exit(f"{dag_id} run {run_id} ended {state}: {states}")
            return seen
        if time.monotonic() > deadline:
            sys.exit(f"{dag_id} run {run_id} still {state} after {timeout:.0f} s")
        time.sleep(0.5)


def check() -> None:
    airflow = Airflow()
    started = time.monotonic()
    sim_vendor = PUSH_CONN.removeprefix("sms_")
    pushes_before = len(simulator("GET", "state")["pushes"])

    run_id = airflow.trigger("sms_send_and_track", {"sms_conn_id": PUSH_CONN, "recipients": 300})
    print(f"triggered sms_send_and_track {run_id}", flush=True)
    seen = wait_for_run(airflow, "sms_send_and_track", run_id, 300, watch="wait_for_delivery")
    print(f"  DAG run success after {time.monotonic() - started:.0f} s; wait_for_delivery was {sorted(seen)}")
    if not any(s.startswith("deferred in triggerer job") for s in seen):
        sys.exit("the sensor was never seen deferred to a triggerer")
    summary = airflow.get(
        f"/dags/sms_send_and_track/dagRuns/{run_id}/taskInstances/write_summary/xcomEntries/return_value"
    )["value"]
    print(f"  summary: {summary}")
    if summary["total"] != 300 or summary["by_status"].get("pending", 0):
        sys.exit(f"unexpected summary {summary}")

    state = simulator("GET", "state")
    reports = [p for p in state["pushes"][pushes_before:] if p["kind"] == "reports"]
    if not reports or not all(p["acknowledged"] for p in reports):
        sys.exit(f"reports were not pushed and acknowledged: {reports}")
    records = sum(p["records"] for p in reports)
    print(f"  {records} reports pushed to the receiver in {len(reports)} POSTs, all acknowledged")

    known = {r["dag_run_id"] for r in airflow.get("/dags/sms_opt_out/dagRuns", limit=100)["dag_runs"]}
    mobile = f"1390000{int(time.time()) % 10000:04d}"
    simulator("POST", "inbound", {"vendor": sim_vendor, "mobile": mobile, "content": "TD"})
    print(f"sent an opt-out reply TD from {mobile}; waiting for the AssetWatcher's sms_opt_out run", flush=True)
    deadline = time.monotonic() + 180
    while True:
        runs = airflow.get("/dags/sms_opt_out/dagRuns", limit=100)["dag_runs"]
        runs = [r for r in runs if r["dag_run_id"] not in known]
        if runs:
            break
        if time.monotonic() > deadline:
            sys.exit("no sms_opt_out run within 180 s of the reply")
        time.sleep(1)
    run = runs[0]
    wait_for_run(airflow, "sms_opt_out", run["dag_run_id"], 180)
    result = airflow.get(
        f"/dags/sms_opt_out/dagRuns/{run['dag_run_id']}/taskInstances/record_opt_outs/xcomEntries/return_value"
    )["value"]
    print(f"  sms_opt_out run {run['dag_run_id']} ({run['run_type']}) success: {result}")
    if result.get("opt_outs", 0) < 1:
        sys.exit(f"the opt-out run recorded no opt-out: {result}")
    if run["run_type"] != "asset_triggered":
        sys.exit(f"the opt-out run was {run['run_type']}, not asset_triggered")
    inbound = [p for p in simulator("GET", "state")["pushes"] if p["kind"] == "inbound"]
    if not inbound or not inbound[-1]["acknowledged"]:
        sys.exit(f"the reply was not pushed and acknowledged: {inbound}")
    print(f"check passed in {time.monotonic() - started:.0f} s")


def main(argv: list[str]) -> None:
    commands = {"wait-ready": wait_ready, "pusher": pusher, "demo": demo, "check": check}
    if argv[:1] == ["connections"] and len(argv) == 2:
        connections(argv[1])
    elif len(argv) == 1 and argv[0] in commands:
        commands[argv[0]]()
    else:
        sys.exit(f"usage: {sys.argv[0]} connections OUT | {' | '.join(commands)}")


if __name__ == "__main__":
    main(sys.argv[1:])
