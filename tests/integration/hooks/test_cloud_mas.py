"""CloudMasHook against the simulated Cloud MAS over real HTTPS sockets (self-signed certificate)."""

from __future__ import annotations

import base64
import json
import time
import warnings
from decimal import Decimal
from typing import Any

import pytest
import requests
from urllib3.exceptions import InsecureRequestWarning

from airflow_provider_sms.errors import (
    SmsOutcomeUnknownError,
    SmsResponseError,
    SmsTransportError,
    SmsVendorError,
)
from airflow_provider_sms.hooks.base import PROCESS_SLOTS
from airflow_provider_sms.hooks.cloud_mas import CloudMasHook
from airflow_provider_sms.numbers import message_parts
from airflow_provider_sms.simulator import Fault, GatewaySimulator
from airflow_provider_sms.simulator.core import md5_hex

pytestmark = pytest.mark.integration

VENDOR = "cloud_mas"
SUBMIT, TEMPLATE, REPORT, DELIVER = "/sms/submit", "/sms/tmpsubmit", "/sms/report", "/sms/deliver"
NORSUBMIT = "/sms/norsubmit"  # the HTTP account's submit
SIGNATURE_TEXT = "【SimCorp】"  # what the simulated platform adds for the account's signature code
DEFAULT_PULL_INTERVAL = CloudMasHook.pull_interval


@pytest.fixture(autouse=True)
def _fast_pulls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator fixture allows back-to-back pulls; so does the hook, unless a test says otherwise."""
    monkeypatch.setattr(CloudMasHook, "pull_interval", 0.0)


@pytest.fixture
def hook(sms_connections: dict[str, str]) -> CloudMasHook:
    return CloudMasHook(sms_connections[VENDOR])


def requests_seen(sim: GatewaySimulator, path: str) -> int:
    count: int = sim.gateway.stats()["requests"].get(f"{VENDOR} {path}", 0)
    return count


def use_connection(monkeypatch: pytest.MonkeyPatch, sim: GatewaySimulator, conn_id: str, **changes: Any) -> None:
    conn = json.loads(sim.connection_json(VENDOR, retry_wait=0.01))
    extra = changes.pop("extra", {})
    conn.update(changes)
    conn["extra"].update(extra)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def numbers(count: int) -> list[str]:
    return [f"139{i:08d}" for i in range(count)]


def raw(
    sim: GatewaySimulator,
    path: str,
    payload: Any,
    content_type: str | None = "application/json;charset=utf-8",
    *,
    base: str | None = None,
) -> Any:
    """A hand-made request, for what the hook would never send; the reply's JSON (or the response).

    ``content_type=None`` sends no Content-Type header; ``base`` is the simulator's HTTPS URL by default.
    """
    body = payload if isinstance(payload, bytes) else base64.b64encode(json.dumps(payload).encode("utf-8"))
    response = requests.post(
        (base or sim.https_url) + path,
        data=body,
        headers={} if content_type is None else {"Content-Type": content_type},
        verify=sim.cert_path,
        timeout=5,
    )
    return response.json() if response.status_code == 200 else response


def signed(sim: GatewaySimulator, **changes: str) -> dict[str, str]:
    """A submit body with a correct MAC over the (changed) fields."""
    account = sim.gateway.account(VENDOR)
    body = {
        "ecName": account.extra["ec_name"],
        "apId": account.login,
        "mobiles": "13800138000",
        "content": "hi",
        "sign": account.extra["sign"],
        "addSerial": "",
        **changes,
    }
    order = (body["ecName"], body["apId"], account.secret, body["mobiles"], body["content"], body["sign"])
    body.setdefault("mac", md5_hex("".join(order) + body["addSerial"]))
    return body


def signed_template(sim: GatewaySimulator, **changes: str) -> dict[str, str]:
    account = sim.gateway.account(VENDOR)
    body = {
        "ecName": account.extra["ec_name"],
        "apId": account.login,
        "templateId": "T1",
        "mobiles": "13800138000",
        "params": '["1"]',
        "sign": account.extra["sign"],
        "addSerial": "",
        **changes,
    }
    fields = ("ecName", "apId", "templateId", "mobiles", "params", "sign", "addSerial")
    values = [body[f] for f in fields]
    body["mac"] = md5_hex("".join([*values[:2], account.secret, *values[2:]]))
    return body


def rspcod(reply: Any) -> str:
    assert isinstance(reply, dict), reply
    code: str = reply["rspcod"]
    return code


# ------------------------------------------------------------------------------------------ happy path


def test_send_reports_inbound_and_charge(hook: CloudMasHook, sms_simulator: GatewaySimulator) -> None:
    gateway = sms_simulator.gateway
    gateway.config.report_delay = 0
    start = gateway.balances[VENDOR]
    text = "通知" * 75  # 150 characters; with the signature 159: 3 parts
    (receipt,) = hook.send(["13800138000", "+86 138 0013 8001"], text, ext_no="12")
    assert len(receipt.batch_id) > 19  # wider than 64 bits, kept exact as a string
    parts = message_parts(SIGNATURE_TEXT + text)
    assert parts == 3
    assert gateway.balances[VENDOR] == start - Decimal(2 * parts)

    reports = hook.fetch_reports()
    assert sorted(r.mobile for r in reports) == ["13800138000", "13800138001"]
    assert {r.batch_id for r in reports} == {receipt.batch_id}
    assert {r.status for r in reports} == {"delivered"}
    assert all(r.reported_at is not None and r.reported_at.utcoffset() is not None for r in reports)
    assert hook.fetch_reports() == []  # a queue: each report is handed out once

    gateway.add_inbound(VENDOR, "13800138000", "收到，谢谢", ext_no="12")
    (message,) = hook.fetch_inbound()
    assert (message.mobile, message.content, message.ext_no) == ("13800138000", "收到，谢谢", "12")
    assert message.received_at is not None
    assert hook.fetch_inbound() == []


def test_failed_delivery_carries_the_operator_code(hook: CloudMasHook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.config.report_delay = 0
    sms_simulator.gateway.config.failure_rate = 1.0
    hook.send("13800138000", "hi")
    (report,) = hook.fetch_reports()
    assert (report.status, report.code) == ("failed", "DB:0140")


def test_12000_numbers_take_3_requests(hook: CloudMasHook, sms_simulator: GatewaySimulator) -> None:
    receipts = hook.send(numbers(12000), "hi")
    assert [len(r.mobiles) for r in receipts] == [5000, 5000, 2000]
    assert requests_seen(sms_simulator, SUBMIT) == 3
    stats = sms_simulator.gateway.stats()
    assert stats["accepted_requests"] == {VENDOR: 3}
    assert stats["accepted_messages"] == {VENDOR: 12000}


def test_many_to_many(hook: CloudMasHook, sms_simulator: GatewaySimulator) -> None:
    messages = {m: f"您好 {i}" for i, m in enumerate(numbers(1500))}
    receipts = hook.send_personalized(messages, ext_no="7")
    assert [len(r.mobiles) for r in receipts] == [999, 501]
    assert requests_seen(sms_simulator, SUBMIT) == 2
    stored = sms_simulator.gateway.messages[VENDOR]
    assert len(stored) == 1500
    first = stored[(receipts[0].batch_id, "13900000000")]
    assert (first.content, first.ext_no) == (SIGNATURE_TEXT + "您好 0", "7")
    assert stored[(receipts[1].batch_id, "13900001499")].content == SIGNATURE_TEXT + "您好 1499"


def test_template(hook: CloudMasHook, sms_simulator: GatewaySimulator) -> None:
    (receipt,) = hook.send_template(["13800138000", "13800138001"], "T100", ["123456", 5])
    (no_params,) = hook.send_template("13800138002", "T200")
    stored = sms_simulator.gateway.messages[VENDOR]
    assert "123456,5" in stored[(receipt.batch_id, "13800138001")].content
    assert (no_params.batch_id, "13800138002") in stored
    assert requests_seen(sms_simulator, TEMPLATE) == 2


def test_test_connection(hook: CloudMasHook) -> None:
    ok, message = hook.test_connection()
    assert ok, message
    assert "TLS verification off" in message
    assert "NOT checked" in message


# ------------------------------------------------------------------------------------------------- TLS


def test_verify_with_the_simulator_certificate(
    sms_simulator: GatewaySimulator, sms_connections: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_connection(monkeypatch, sms_simulator, "sms_mas_ca", extra={"verify": sms_simulator.cert_path})
    hook = CloudMasHook("sms_mas_ca")
    assert hook.send("13800138000", "hi")[0].batch_id
    assert hook.test_connection()[0]


def test_verify_true_is_a_clear_tls_error(
    sms_simulator: GatewaySimulator, sms_connections: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_connection(monkeypatch, sms_simulator, "sms_mas_strict", extra={"verify": "true"})
    hook = CloudMasHook("sms_mas_strict")
    start = time.monotonic()
    why = r"TLS error: certificate verify failed: self.signed certificate .*a CA bundle.*false only"
    with pytest.raises(SmsTransportError, match=why):
        hook.send("13800138000", "hi")
    with pytest.raises(SmsTransportError, match=why):
        hook.fetch_reports()
    assert time.monotonic() - start < 5  # not retried over and over
    assert requests_seen(sms_simulator, SUBMIT) == 0
    assert sms_simulator.gateway.stats()["accepted_requests"] == {}
    ok, message = hook.test_connection()
    assert not ok
    assert "TLS error" in message


def test_unverified_warning_silenced_for_the_vendor_host_only(
    hook: CloudMasHook, sms_simulator: GatewaySimulator, recwarn: pytest.WarningsRecorder
) -> None:
    filters_before = list(warnings.filters)
    hook.send("13800138000", "hi")
    hook.fetch_reports()
    assert not [w for w in recwarn if issubclass(w.category, InsecureRequestWarning)]
    added = [f for f in warnings.filters if f not in filters_before]
    assert len(added) == 1, "one filter, for the vendor's host"
    hook.for_thread().fetch_reports()  # another session on the same host adds no second filter
    assert [f for f in warnings.filters if f not in filters_before] == added
    other_host = sms_simulator.https_url.replace("127.0.0.1", "localhost")
    with pytest.warns(InsecureRequestWarning, match="host 'localhost'"):  # any other host still warns
        requests.get(other_host, verify=False, timeout=5)


def test_unverified_warning_stays_silent_with_concurrent_sends(
    hook: CloudMasHook, sms_simulator: GatewaySimulator, recwarn: pytest.WarningsRecorder
) -> None:
    """Sending threads each open a session; none may leak the warning or leave the filters changed."""
    from concurrent.futures import ThreadPoolExecutor

    def send(i: int) -> None:
        copy = hook.for_thread()
        try:
            copy.send(f"1380013{i:04d}", "hi")
        finally:
            copy.close()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(32)))
    assert not [w for w in recwarn if issubclass(w.category, InsecureRequestWarning)]
    assert sum(1 for f in warnings.filters if f[2] is InsecureRequestWarning) == 1


# ----------------------------------------------------------------------------------------- credentials


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"password": "wrong-secret"}, "IllegalMac"),
        ({"login": "wrong-ap"}, "InvalidUsrOrPwd"),
        ({"extra": {"ec_name": "OtherCorp"}}, "InvalidUsrOrPwd"),
        ({"extra": {"sign": "SIGN999"}}, "IllegalSignId"),
    ],
)
def test_wrong_credentials_on_send(
    sms_simulator: GatewaySimulator,
    sms_connections: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    changes: dict[str, Any],
    code: str,
) -> None:
    use_connection(monkeypatch, sms_simulator, "sms_mas_wrong", **changes)
    hook = CloudMasHook("sms_mas_wrong")
    with pytest.raises(SmsVendorError) as info:
        hook.send("13800138000", "hi")
    assert info.value.code == code
    with pytest.raises(SmsVendorError) as template_info:
        hook.send_template("13800138000", "T1", ["1"])
    assert template_info.value.code == code
    assert sms_simulator.gateway.stats()["accepted_requests"] == {}


@pytest.mark.parametrize("changes", [{"password": "wrong-secret"}, {"login": "x"}, {"extra": {"ec_name": "x"}}])
def test_wrong_credentials_on_pulls(
    sms_simulator: GatewaySimulator,
    sms_connections: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    changes: dict[str, Any],
) -> None:
    sms_simulator.gateway.config.report_delay = 0
    CloudMasHook(sms_connections[VENDOR]).send("13800138000", "hi")
    use_connection(monkeypatch, sms_simulator, "sms_mas_wrong", **changes)
    hook = CloudMasHook("sms_mas_wrong")
    for call in (hook.fetch_reports, hook.fetch_inbound):
        with pytest.raises(SmsVendorError, match="InvalidUsrOrPwd"):
            call()
    assert len(CloudMasHook(sms_connections[VENDOR]).fetch_reports()) == 1  # nothing was handed out


# -------------------------------------------------------------------------------- simulator strictness


def test_simulator_rejects_malformed_requests(sms_simulator: GatewaySimulator) -> None:
    good = signed(sms_simulator)
    assert rspcod(raw(sms_simulator, SUBMIT, good)) == "success"
    assert rspcod(raw(sms_simulator, SUBMIT, good, content_type="multipart/form-data")) == "InvalidMessage"
    assert rspcod(raw(sms_simulator, SUBMIT, good, content_type="application/xml")) == "InvalidMessage"
    quoted_object = json.dumps(good).encode()  # JSON, but neither base64 nor a JSON string of it
    assert rspcod(raw(sms_simulator, SUBMIT, quoted_object, content_type="text/plain")) == "InvalidMessage"
    assert rspcod(raw(sms_simulator, SUBMIT, b'"not base64!"')) == "InvalidMessage"
    assert rspcod(raw(sms_simulator, SUBMIT, b'"unterminated')) == "InvalidMessage"
    assert rspcod(raw(sms_simulator, SUBMIT, json.dumps(good).encode())) == "InvalidMessage"  # not base64
    assert rspcod(raw(sms_simulator, SUBMIT, base64.b64encode(b"not json"))) == "InvalidMessage"
    assert rspcod(raw(sms_simulator, SUBMIT, ["a"])) == "InvalidMessage"
    missing = {k: v for k, v in good.items() if k != "addSerial"}
    assert rspcod(raw(sms_simulator, SUBMIT, missing)) == "InvalidMessage"
    assert rspcod(raw(sms_simulator, SUBMIT, {**good, "mac": good["mac"].upper()})) == "IllegalMac"
    assert rspcod(raw(sms_simulator, SUBMIT, signed(sms_simulator, sign=""))) == "NoSignId"
    assert rspcod(raw(sms_simulator, SUBMIT, signed(sms_simulator, sign="NOPE"))) == "IllegalSignId"
    too_many = ",".join(numbers(5001))
    assert rspcod(raw(sms_simulator, SUBMIT, signed(sms_simulator, mobiles=too_many))) == "TooManyMobiles"
    assert rspcod(raw(sms_simulator, SUBMIT, signed(sms_simulator, mobiles="1380013800"))) == "InvalidMessage"
    assert rspcod(raw(sms_simulator, SUBMIT, signed(sms_simulator, content=""))) == "InvalidMessage"
    assert rspcod(raw(sms_simulator, SUBMIT, signed(sms_simulator, addSerial="1" * 11))) == "InvalidMessage"
    assert rspcod(raw(sms_simulator, SUBMIT, signed(sms_simulator, addSerial="12a"))) == "InvalidMessage"
    get = requests.get(sms_simulator.https_url + SUBMIT, verify=sms_simulator.cert_path, timeout=5)
    assert get.status_code == 405
    assert sms_simulator.gateway.stats()["accepted_requests"] == {VENDOR: 1}


def test_simulator_many_to_many_limits(sms_simulator: GatewaySimulator) -> None:
    def personalized(texts: Any) -> str:
        content = texts if isinstance(texts, str) else json.dumps(texts, ensure_ascii=False)
        return rspcod(raw(sms_simulator, SUBMIT, signed(sms_simulator, mobiles="", content=content)))

    assert personalized({m: "x" for m in numbers(999)}) == "success"
    assert personalized({m: "x" for m in numbers(1000)}) == "TooManyMobiles"
    assert personalized({"12345": "x"}) == "InvalidMessage"
    assert personalized({"13800138000": ""}) == "InvalidMessage"
    assert personalized({}) == "InvalidMessage"
    assert personalized("not json") == "InvalidMessage"


def test_simulator_template_checks(sms_simulator: GatewaySimulator) -> None:
    assert rspcod(raw(sms_simulator, TEMPLATE, signed_template(sms_simulator))) == "success"
    assert rspcod(raw(sms_simulator, TEMPLATE, signed_template(sms_simulator, params='[""]'))) == "success"
    for params in ("[]", "[1]", "{}", "oops"):
        assert rspcod(raw(sms_simulator, TEMPLATE, signed_template(sms_simulator, params=params))) == "InvalidMessage"
    assert rspcod(raw(sms_simulator, TEMPLATE, signed_template(sms_simulator, templateId=""))) == "InvalidMessage"
    assert rspcod(raw(sms_simulator, TEMPLATE, signed_template(sms_simulator, mobiles=""))) == "InvalidMessage"
    bad_mac = {**signed_template(sms_simulator), "mac": "0" * 32}
    assert rspcod(raw(sms_simulator, TEMPLATE, bad_mac)) == "IllegalMac"


# ----------------------------------------------------------------------------------- the 5-second rule


def test_back_to_back_pulls_keep_to_5_seconds(
    hook: CloudMasHook, sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CloudMasHook, "pull_interval", DEFAULT_PULL_INTERVAL)  # the hook's own default
    assert hook.pull_interval == 5.0
    sms_simulator.gateway.config.pull_interval = 5.0
    start = time.monotonic()
    hook.fetch_reports()
    hook.fetch_inbound()  # the other endpoint has its own limit: no wait
    assert time.monotonic() - start < 2
    hook.fetch_reports()
    assert time.monotonic() - start >= 5.0
    assert sms_simulator.gateway.stats()["throttle_violations"].get(VENDOR, 0) == 0
    assert requests_seen(sms_simulator, REPORT) == 2


def test_too_early_pull_from_another_process_is_answered_429_and_retried(
    hook: CloudMasHook, sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CloudMasHook, "pull_interval", DEFAULT_PULL_INTERVAL)  # the hook's own default
    assert hook.pull_interval == 5.0
    gateway = sms_simulator.gateway
    gateway.config.pull_interval = 5.0
    gateway.config.report_delay = 0
    hook.fetch_reports()
    hook.send("13800138000", "hi")
    PROCESS_SLOTS.clear()  # what another worker process would see: no record of our pull
    start = time.monotonic()
    (report,) = hook.fetch_reports()
    assert report.mobile == "13800138000"
    assert time.monotonic() - start >= 4.0  # waited for the server's Retry-After
    assert gateway.stats()["throttle_violations"] == {VENDOR: 1}
    assert requests_seen(sms_simulator, REPORT) == 3


def test_a_retried_pull_keeps_the_interval_and_the_simulator_counts_faulted_pulls(
    hook: CloudMasHook, sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pull answered 503 was a pull all the same: its retry waits for the account's next slot."""
    monkeypatch.setattr(CloudMasHook, "pull_interval", 1.0)
    sms_simulator.gateway.config.pull_interval = 1.0
    sms_simulator.gateway.add_fault(Fault(kind="status", remaining=1, vendor=VENDOR, path=REPORT))
    start = time.monotonic()
    assert hook.fetch_reports() == []
    assert time.monotonic() - start >= 1.0
    assert requests_seen(sms_simulator, REPORT) == 2
    assert sms_simulator.gateway.stats()["throttle_violations"].get(VENDOR, 0) == 0
    time.sleep(1.1)
    sms_simulator.gateway.add_fault(Fault(kind="status", remaining=1, vendor=VENDOR, path=REPORT))
    raw_pulls = [hook.session.post(f"{hook.config.base_url}{REPORT}", data=b"x", verify=False) for _ in range(2)]
    assert [r.status_code for r in raw_pulls] == [503, 429]  # the faulted one counted as a pull
    assert sms_simulator.gateway.stats()["throttle_violations"] == {VENDOR: 1}


_PULL_CHILD = """
import sys
from airflow_provider_sms.hooks.cloud_mas import CloudMasHook
from airflow_provider_sms.store import SmsStore
from airflow_provider_sms.pulling import pull_reports

CloudMasHook.pull_interval = 1.0
with SmsStore(path=sys.argv[1]) as store:
    print(pull_reports(CloudMasHook("sms_cloud_mas"), store).pulls)
"""


def test_processes_sharing_a_store_keep_one_pull_interval_per_account(
    sms_simulator: GatewaySimulator, tmp_path: Any
) -> None:
    """Two workers (processes) sync the same account back to back: the store holds the slot for both."""
    import os
    import subprocess
    import sys

    sms_simulator.gateway.config.pull_interval = 1.0
    env = {**os.environ, "AIRFLOW_CONN_SMS_CLOUD_MAS": sms_simulator.connection_json(VENDOR, retry_wait=0.01)}
    store = str(tmp_path / "shared.db")
    start = time.monotonic()
    children = [
        subprocess.Popen([sys.executable, "-c", _PULL_CHILD, store], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [child.communicate(timeout=60)[0].strip().splitlines()[-1] for child in children]
    assert [child.returncode for child in children] == [0, 0, 0]
    assert outputs == ["1", "1", "1"]
    assert time.monotonic() - start >= 2.0  # three pulls, one slot each
    assert requests_seen(sms_simulator, REPORT) == 3
    assert sms_simulator.gateway.stats()["throttle_violations"].get(VENDOR, 0) == 0


def test_simulator_answers_429_with_retry_after(sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.config.pull_interval = 5.0
    account = sms_simulator.gateway.account(VENDOR)
    body = {"ecName": account.extra["ec_name"], "apId": account.login, "secretKey": account.secret}
    assert raw(sms_simulator, DELIVER, body) == []
    early = raw(sms_simulator, DELIVER, body)
    assert early.status_code == 429
    assert early.headers["Retry-After"] == "5"


# ---------------------------------------------------------------------------------------------- faults


@pytest.mark.parametrize("kind", ["html", "status"])
def test_reads_retried_through_5xx(hook: CloudMasHook, sms_simulator: GatewaySimulator, kind: str) -> None:
    sms_simulator.gateway.config.report_delay = 0
    hook.send("13800138000", "hi")
    sms_simulator.gateway.add_fault(Fault(kind=kind, remaining=2, vendor=VENDOR, path=REPORT))
    assert len(hook.fetch_reports()) == 1
    assert requests_seen(sms_simulator, REPORT) == 3
    sms_simulator.gateway.add_inbound(VENDOR, "13800138000", "ok")
    sms_simulator.gateway.add_fault(Fault(kind=kind, remaining=2, vendor=VENDOR, path=DELIVER))
    assert len(hook.fetch_inbound()) == 1
    assert requests_seen(sms_simulator, DELIVER) == 3


def test_reads_give_up_after_retries(hook: CloudMasHook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.add_fault(Fault(kind="html", remaining=10, vendor=VENDOR))
    with pytest.raises(SmsResponseError, match="HTTP 502"):
        hook.fetch_inbound()
    assert requests_seen(sms_simulator, DELIVER) == hook.retries + 1


def test_garbage_is_retried_like_a_5xx(hook: CloudMasHook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.config.report_delay = 0
    hook.send("13800138000", "hi")
    assert hook.retries >= 2  # so that the faults below are really retried
    sms_simulator.gateway.add_fault(Fault(kind="garbage", remaining=hook.retries, vendor=VENDOR, path=REPORT))
    assert len(hook.fetch_reports()) == 1  # every retry spent on garbage, the last attempt reads the report
    assert requests_seen(sms_simulator, REPORT) == hook.retries + 1


def test_garbage_beyond_the_retries_is_a_clear_error(hook: CloudMasHook, sms_simulator: GatewaySimulator) -> None:
    attempts = hook.retries + 1
    sms_simulator.gateway.add_fault(Fault(kind="garbage", remaining=attempts, vendor=VENDOR, path=REPORT))
    with pytest.raises(
        SmsResponseError,
        match=rf"delivery report pull: failed after {attempts} attempts: the reply is not JSON \(HTTP 200; body starts",
    ) as info:
        hook.fetch_reports()
    assert info.value.status == 200
    assert requests_seen(sms_simulator, REPORT) == attempts
    assert hook.fetch_reports() == []  # the fault is spent
    assert requests_seen(sms_simulator, REPORT) == attempts + 1


def test_send_hit_by_5xx_is_outcome_unknown_and_not_retried(
    hook: CloudMasHook, sms_simulator: GatewaySimulator
) -> None:
    sms_simulator.gateway.add_fault(Fault(kind="status", remaining=1, vendor=VENDOR, path=SUBMIT))
    with pytest.raises(SmsOutcomeUnknownError, match="send request #1"):
        hook.send("13800138000", "hi")
    assert requests_seen(sms_simulator, SUBMIT) == 1


def test_send_garbage_reply_is_outcome_unknown(hook: CloudMasHook, sms_simulator: GatewaySimulator) -> None:
    sms_simulator.gateway.add_fault(Fault(kind="garbage", remaining=1, vendor=VENDOR, path=TEMPLATE))
    with pytest.raises(SmsOutcomeUnknownError, match="not JSON"):
        hook.send_template("13800138000", "T1")
    assert requests_seen(sms_simulator, TEMPLATE) == 1


def test_send_read_timeout_is_outcome_unknown_and_no_double_send(
    sms_simulator: GatewaySimulator, sms_connections: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_connection(monkeypatch, sms_simulator, "sms_mas_slow", extra={"timeout": 0.5})
    sms_simulator.gateway.add_fault(Fault(kind="delay", remaining=1, vendor=VENDOR, path=SUBMIT, seconds=2))
    hook = CloudMasHook("sms_mas_slow")
    with pytest.raises(SmsOutcomeUnknownError) as info:
        hook.send_personalized({"13800138000": "a", "13800138001": "b"})
    assert "personalized send request #1" in str(info.value)
    assert "read timeout" in str(info.value)
    assert info.value.mobiles == ("13800138000", "13800138001")
    assert requests_seen(sms_simulator, SUBMIT) == 1
    stats = sms_simulator.gateway.stats()
    assert stats["accepted_requests"] == {VENDOR: 1}  # the vendor did act: exactly once
    assert stats["accepted_messages"] == {VENDOR: 2}


# ------------------------------------------------------------------------------ HTTP accounts, real clients


def test_http_account_sends_to_norsubmit_https_to_submit(
    hook: CloudMasHook, sms_simulator: GatewaySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An http:// host is an HTTP account: the hook posts the same body to /sms/norsubmit, over real sockets."""
    sms_simulator.gateway.config.report_delay = 0
    use_connection(monkeypatch, sms_simulator, "sms_mas_http", host=sms_simulator.http_url)
    plain = CloudMasHook("sms_mas_http")
    assert plain.submit_path == NORSUBMIT and hook.submit_path == SUBMIT
    (receipt,) = plain.send(["13800138000", "13800138001"], "hi")
    (personal,) = plain.send_personalized({"13800138002": "您好"})
    (templated,) = plain.send_template("13800138003", "T100", ["1"])
    assert requests_seen(sms_simulator, NORSUBMIT) == 2
    assert requests_seen(sms_simulator, TEMPLATE) == 1
    assert requests_seen(sms_simulator, SUBMIT) == 0
    reports = plain.fetch_reports()  # the pulls answer on the HTTP side too
    assert {r.batch_id for r in reports} == {receipt.batch_id, personal.batch_id, templated.batch_id}
    ok, message = plain.test_connection()
    assert ok and "plain HTTP" in message

    hook.send("13800138004", "hi")
    assert requests_seen(sms_simulator, SUBMIT) == 1
    assert requests_seen(sms_simulator, NORSUBMIT) == 2
    assert sms_simulator.gateway.stats()["accepted_requests"] == {VENDOR: 4}


def test_each_port_serves_its_own_submit(sms_simulator: GatewaySimulator) -> None:
    good = signed(sms_simulator)
    assert rspcod(raw(sms_simulator, NORSUBMIT, good, base=sms_simulator.http_url)) == "success"
    assert rspcod(raw(sms_simulator, TEMPLATE, signed_template(sms_simulator), base=sms_simulator.http_url)) == (
        "success"
    )
    assert raw(sms_simulator, SUBMIT, good, base=sms_simulator.http_url).status_code == 404
    assert raw(sms_simulator, NORSUBMIT, good).status_code == 404
    assert sms_simulator.gateway.stats()["accepted_requests"] == {VENDOR: 2}


def test_replies_spell_msg_group_as_the_real_gateway(sms_simulator: GatewaySimulator) -> None:
    reply = raw(sms_simulator, SUBMIT, signed(sms_simulator))
    assert reply["rspcod"] == "success" and reply["msgGroup"] and "mgsGroup" not in reply
    refused = raw(sms_simulator, SUBMIT, signed(sms_simulator, sign="NOPE"))
    assert refused == {"rspcod": "IllegalSignId", "msgGroup": "", "success": False}


def _quoted(payload: dict[str, str]) -> bytes:
    """The base64 text as a JSON string, quotes included: what a JSON serialiser makes of the string."""
    return json.dumps(base64.b64encode(json.dumps(payload).encode("utf-8")).decode("ascii")).encode()


@pytest.mark.parametrize("port", ["https", "http"])
@pytest.mark.parametrize(
    ("content_type", "quoted"),
    [
        ("text/plain", False),
        ("text/plain;charset=UTF-8", True),
        ("application/json", True),
        ("application/x-www-form-urlencoded", False),  # HttpURLConnection's default, Hutool's HttpUtil.post
        (None, False),  # no Content-Type header at all
        (None, True),
    ],
)
def test_simulator_accepts_what_real_clients_send(
    sms_simulator: GatewaySimulator, port: str, content_type: str | None, quoted: bool
) -> None:
    """Bodies public clients send the real gateway successfully, over real sockets on both ports."""
    base, path = (sms_simulator.https_url, SUBMIT) if port == "https" else (sms_simulator.http_url, NORSUBMIT)
    submit = signed(sms_simulator)
    body = _quoted(submit) if quoted else base64.b64encode(json.dumps(submit).encode("utf-8"))
    assert rspcod(raw(sms_simulator, path, body, content_type, base=base)) == "success"
    template = signed_template(sms_simulator)
    body = _quoted(template) if quoted else base64.b64encode(json.dumps(template).encode("utf-8"))
    assert rspcod(raw(sms_simulator, TEMPLATE, body, content_type, base=base)) == "success"
    assert sms_simulator.gateway.stats()["accepted_requests"] == {VENDOR: 2}
