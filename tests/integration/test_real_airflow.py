"""A real Airflow, started by ``scripts/airflow-local.sh`` (api-server, scheduler, dag-processor and triggerer as
separate processes, the simulator, the example connections and DAGs), then stopped with Ctrl-C:

* ``test_local_airflow_check``: the script's own end-to-end check (``airflow-local.sh check``): a DAG run
  triggered over the REST API succeeds, its sensor deferred to the triggerer, reports came as pushes, an
  opt-out reply starts the AssetWatcher's DAG; and, when the module ends, Ctrl-C leaves no process behind.
* ``test_connection_form_in_a_browser``: Airflow's UI in headless Chromium (Playwright, pointed at the
  system's ``chromium``): each of the five connection types created through the Add Connection form, its
  fields checked against the provider info (labels, placeholders, hidden fields, number inputs, selects and
  their options, password inputs, defaults), and the saved connection's extras compared with what was typed.
  Skipped without Playwright or Chromium, unless ``SMS_REQUIRE_BROWSER=1`` (CI) makes that a failure.
* ``test_the_test_button_on_the_example_connections``: the connection list's Test button, in the same browser,
  succeeds on each of the five example connections.

Run alone: ``.venv/bin/python -m pytest -q tests/integration/test_real_airflow.py`` (about a minute and a half;
``-k browser`` for the forms; ``apt-get install chromium`` and ``pip install playwright`` first, no
``playwright install``).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sms.provider_info import CONNECTION_TYPES

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "airflow-local.sh"
FORMS: dict[str, dict[str, Any]] = {entry["connection-type"]: entry for entry in CONNECTION_TYPES}
STANDARD_FIELDS = ("host", "login", "password", "port", "schema")

# What each extra must render as, stated here rather than derived from the schemas: a schema that changes
# (a union type, a lost enum) must fail this test, not change its expectation.
NUMBER_FIELDS = {
    "timeout",
    "retries",
    "retry_wait",
    "report_deadline_hours",
    "max_requests_per_second",
    "max_parts",
    "price_per_part",
}
INTEGER_FIELDS = {"retries", "max_parts"}
SELECT_FIELDS = {"format", "product_id", "kind", "pwd_case"}
PASSWORD_FIELDS = {"callback_secret"}
SUGGESTION_FIELDS = {"verify"}  # a one-line text input with a list of suggestions
LEFT_EMPTY = {"max_requests_per_second", "callback_store_table_prefix"}  # saved as null


# ------------------------------------------------------------------------------------------ the running Airflow


class LocalAirflow:
    """``scripts/airflow-local.sh start`` in its own process group, as a user's terminal would run it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SMS_"))}
        self.env.update(
            SMS_LOCAL_DIR=str(directory),
            SMS_LOCAL_PORT=str(self.port),
            SMS_VENV=str(Path(sys.executable).parent.parent),
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        )
        self.log = directory.parent / "airflow-local.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.settings: dict[str, str] = {}

    def start(self, timeout: float = 300) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["bash", str(SCRIPT), "start"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not (self.directory / "ready").exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"airflow-local.sh start did not get ready:\n{self.output()}", pytrace=False)
            time.sleep(0.5)
        for line in (self.directory / "env.sh").read_text(encoding="utf-8").splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export ") :].partition("=")
                self.settings[key] = value.strip("'")

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-5000:]

    def ctrl_c(self) -> list[str]:
        """Ctrl-C as a terminal sends it (SIGINT to the script's process group); what is left running after."""
        assert self.process is not None
        run_id = (self.directory / "run-id").read_text(encoding="utf-8").strip()
        groups = [line.split()[1] for line in (self.directory / "pids").read_text(encoding="utf-8").splitlines()]
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            pytest.fail(f"airflow-local.sh did not stop on Ctrl-C:\n{self.output()}", pytrace=False)
        return _processes_of(run_id, groups)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _processes_of(run_id: str, groups: list[str]) -> list[str]:
    """Processes in the start's process groups or carrying its marker in their environment."""
    left = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            pgid = (proc / "stat").read_text().rsplit(")", 1)[1].split()[2]
            environ = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if pgid in groups or f"SMS_LOCAL_RUN={run_id}".encode() in environ:
            left.append(f"{proc.name} {cmdline[:120]}")
    return left


@pytest.fixture(scope="module")
def local_airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAirflow]:
    if not sys.platform.startswith("linux") or not shutil.which("setsid"):
        pytest.skip("scripts/airflow-local.sh needs Linux (setsid, /proc)")
    airflow = LocalAirflow(tmp_path_factory.mktemp("real-airflow") / "local")
    airflow.start()
    try:
        yield airflow
    finally:
        left = airflow.ctrl_c()
        output = airflow.output()
        assert not left, f"left running after Ctrl-C: {left}\n{output}"
        assert "no process of this start is left" in output, output


def test_local_airflow_check(local_airflow: LocalAirflow) -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT), "check"],
        env=local_airflow.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "check passed" in output, output
    assert f"Airflow is running: http://localhost:{local_airflow.port}" in local_airflow.output()


# --------------------------------------------------------------------------------------------- the browser


def _chromium() -> str | None:
    for candidate in (os.environ.get("SMS_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (path := shutil.which(candidate)):
            return path
    return None


@pytest.fixture(scope="module")
def browser(local_airflow: LocalAirflow) -> Iterator[Any]:
    """A logged-in page of the UI in headless Chromium."""
    reason = ""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "Playwright is not installed (pip install playwright)"
    chromium = _chromium()
    if not chromium and not reason:
        reason = "Chromium is not installed (apt-get install chromium)"
    if reason:
        if os.environ.get("SMS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"SMS_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = instance.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(20_000)
        url = local_airflow.settings["SMS_LOCAL_URL"]
        page.goto(f"{url}/connections")
        page.fill("input[name=username]", local_airflow.settings["SMS_LOCAL_USER"])
        page.fill("input[name=password]", local_airflow.settings["SMS_LOCAL_PASSWORD"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/connections")
        try:
            yield page
        finally:
            instance.close()


def _field_root(dialog: Any, selector: str) -> Any:
    """The form row (label, input, helper text) around the element matched by ``selector``."""
    return dialog.locator("[data-part=root][role=group]").filter(has=dialog.page.locator(selector))


def _typed_values(conn_type: str) -> dict[str, Any]:
    """What the test types into each extra: something other than the default, so a lost value shows."""
    values: dict[str, Any] = {}
    for name, field in FORMS[conn_type]["conn-fields"].items():
        schema = field["schema"]
        if name in LEFT_EMPTY:
            values[name] = None
        elif name in NUMBER_FIELDS:
            values[name] = int(schema["minimum"]) + 7 if name in INTEGER_FIELDS else schema["minimum"] + 4.5
        elif name in SELECT_FIELDS:
            values[name] = [v for v in schema["enum"] if v is not None and v != schema.get("default")][-1]
        elif name in PASSWORD_FIELDS:
            values[name] = f"pw-{conn_type}-{name}-0123456789abcdef"
        elif name == "verify":
            values[name] = "true"
        elif name == "timezone":
            values[name] = "Europe/Berlin"
        else:
            values[name] = f"{name}-{conn_type[-4:]}-值"
    return values


@pytest.mark.browser
@pytest.mark.parametrize("conn_type", sorted(FORMS))
def test_connection_form_in_a_browser(conn_type: str, browser: Any, local_airflow: LocalAirflow) -> None:
    page = browser
    form = FORMS[conn_type]
    fields: dict[str, dict[str, Any]] = form["conn-fields"]
    conn_id = f"form_{conn_type}"

    page.goto(f"{local_airflow.settings['SMS_LOCAL_URL']}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("input[name=connection_id]").fill(conn_id)
    dialog.get_by_role("combobox").first.fill(conn_type)
    page.keyboard.press("Enter")
    picked = _field_root(dialog, "[role=combobox]").first.inner_text()
    assert f"option {form['hook-name']}, selected." in picked, picked

    standard = _fill_standard_fields(dialog, form["ui-field-behaviour"], conn_type)

    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    shown = sorted(
        name.removeprefix("element_")
        for name in dialog.locator("[name^=element_]").evaluate_all("els => els.map(e => e.name)")
    )
    assert shown == sorted(fields), "the form's extra fields differ from the provider info's conn-fields"
    assert dialog.locator("textarea[name^=element_]").count() == 0, "an extra rendered as a multi-line text area"
    typed = _typed_values(conn_type)
    for name, field in fields.items():
        _check_and_fill_extra(dialog, name, field, typed[name])

    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="detached")

    saved = _stored_connection(local_airflow, conn_id)
    assert saved["conn_type"] == conn_type
    for name, value in standard.items():
        assert saved[name] == value, f"{name}: saved {saved[name]!r}"
    extra = json.loads(saved["extra"])
    assert extra == typed, "saved extras differ from what was typed"
    for name in NUMBER_FIELDS & set(typed):
        if typed[name] is not None:
            assert isinstance(extra[name], int if name in INTEGER_FIELDS else float), f"{name} saved as {extra[name]!r}"


def _fill_standard_fields(dialog: Any, behaviour: dict[str, Any], conn_type: str) -> dict[str, Any]:
    """Host, login, password, port: hidden where ours hide them, relabelled, with our placeholders; filled."""
    values: dict[str, Any] = {
        "host": "https://gateway.example.com:8443",
        "login": f"login-{conn_type}",
        "password": f"secret-{conn_type}-0123456789",
        "port": 8443,
    }
    assert "port" not in behaviour["hidden-fields"], "every form shows Port (the Test button needs it)"
    for name in STANDARD_FIELDS:
        field = dialog.locator(f"[name={name}]")
        if name in behaviour["hidden-fields"]:
            assert field.count() == 0 or not field.is_visible(), f"{name} is shown but should be hidden"
            continue
        assert field.is_visible(), f"{name} is not shown"
        label = _field_root(dialog, f"[name={name}]").locator("label").inner_text().strip()
        assert label == behaviour["relabeling"][name], f"{name} labelled {label!r}"
        assert (field.get_attribute("placeholder") or "") == behaviour["placeholders"].get(name, ""), name
        assert field.evaluate("e => e.tagName") == "INPUT", f"{name} is not a one-line input"
        expected_type = {"port": "number", "password": "password"}.get(name, "text")
        assert field.get_attribute("type") == expected_type, f"{name}: type"
        field.fill(str(values[name]))
    return values


def _check_and_fill_extra(dialog: Any, name: str, field: dict[str, Any], value: Any) -> None:
    """One extra: its label, description, input kind and default; then ``value`` typed or picked (None: left empty)."""
    page = dialog.page
    schema = field["schema"]
    default = schema.get("default")
    root = _field_root(dialog, f"[name=element_{name}]")
    assert root.count() == 1, name
    assert root.locator("label").inner_text().strip() == field["label"], name
    assert field["description"] in root.inner_text(), f"{name}: no description"
    if name in NUMBER_FIELDS:
        box = dialog.locator(f"[id='number-input:element_{name}'] input[role=spinbutton]")
        assert box.count() == 1, f"{name} is not a number input"
        assert box.evaluate("e => e.tagName") == "INPUT", f"{name} is not single-line"
        assert float(box.get_attribute("aria-valuemin") or "nan") == schema["minimum"], name
        assert box.input_value() == ("" if default is None else str(default)), f"{name}: default"
        if value is not None:
            box.fill(str(value))
            box.press("Tab")
    elif name in SELECT_FIELDS:
        combobox = dialog.locator(f"#element_{name} [role=combobox]")
        assert combobox.count() == 1, f"{name} is not a select"
        stored = dialog.locator(f"input[type=hidden][name=element_{name}]")
        # "__null__" is the UI's own marker for the empty choice, which it saves as null
        assert stored.input_value() == (default or "__null__"), f"{name}: default"
        combobox.click()
        options = page.get_by_role("option").all_inner_texts()
        assert options == [*schema["values_display"].values(), "null"], f"{name}: options {options}"
        page.get_by_role("option", name=schema["values_display"][value], exact=True).click()
        assert stored.input_value() == value, name
    else:
        box = dialog.locator(f"input[name=element_{name}]")
        assert box.count() == 1, f"{name} is not a one-line input"
        expected_type = "password" if name in PASSWORD_FIELDS else "text"
        assert (box.get_attribute("type") or "text") == expected_type, f"{name}: type"
        suggestions = box.get_attribute("list")
        if name in SUGGESTION_FIELDS:
            listed = dialog.locator(f"datalist#{suggestions} option").evaluate_all("os => os.map(o => o.value)")
            assert listed == schema["examples"], f"{name}: suggestions {listed}"
        else:
            assert suggestions is None, f"{name}: unexpected suggestions"
        assert box.input_value() == (default or ""), f"{name}: default"
        if value is not None:
            box.fill(value)


def _stored_connection(local_airflow: LocalAirflow, conn_id: str) -> dict[str, Any]:
    """The connection as stored in the metadata database, decrypted with the Fernet key of its airflow.cfg."""
    home = Path(local_airflow.settings["AIRFLOW_HOME"])
    with sqlite3.connect(home / "airflow.db") as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM connection WHERE conn_id = ?", (conn_id,)).fetchone()
    assert row is not None, f"{conn_id} was not saved"
    stored = dict(row)
    if row["is_encrypted"] or row["is_extra_encrypted"]:
        from cryptography.fernet import Fernet, MultiFernet

        config = configparser.ConfigParser(interpolation=None)
        config.read(home / "airflow.cfg")
        keys = config.get("core", "fernet_key")
        fernet = MultiFernet([Fernet(key.strip().encode()) for key in keys.split(",") if key.strip()])
        for field, encrypted in (("password", "is_encrypted"), ("extra", "is_extra_encrypted")):
            if row[encrypted] and stored[field] is not None:
                stored[field] = fernet.decrypt(stored[field].encode()).decode()
    return stored


@pytest.mark.browser
@pytest.mark.parametrize("conn_type", sorted(FORMS))
def test_the_test_button_on_the_example_connections(conn_type: str, browser: Any, local_airflow: LocalAirflow) -> None:
    """The example connections (Base URL's port stored) pass the connection list's Test button against the
    simulator: the UI posts the stored port, so Airflow 3.3's API does not refuse the test (README, Troubleshooting)."""
    page = browser
    page.goto(f"{local_airflow.settings['SMS_LOCAL_URL']}/connections")
    # the row whose Connection ID (second column, after the checkbox) is conn_type; form_<conn_type> has that type
    row = page.locator("tbody tr").filter(has=page.locator("td:nth-child(2)", has_text=re.compile(f"^{conn_type}$")))
    row.first.wait_for()
    assert row.count() == 1, f"{conn_type}: {row.count()} rows"
    with page.expect_response("**/api/v2/connections/test") as answer:
        row.locator("button").first.click()
    posted = json.loads(answer.value.request.post_data or "{}")
    assert answer.value.status == 200, f"{answer.value.status} {answer.value.text()} for {posted}"
    result = answer.value.json()
    assert result["status"] is True, result["message"]
    assert posted["connection_id"] == conn_type and posted["port"], posted
