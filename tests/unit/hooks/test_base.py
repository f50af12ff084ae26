"""The shared base hook (``hooks/base.py``), exercised through ``PaaswV2Hook`` with requests-mock.

Connection parsing, the retry policy (reads vs sends), the token cache, send options, capabilities,
``test_connection`` and keeping secrets out of errors and logs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from airflow_provider_sms.errors import (
    SmsConfigurationError,
    SmsInvalidNumbersError,
    SmsInvalidRequestError,
    SmsNotSupportedError,
    SmsOutcomeUnknownError,
    SmsResponseError,
    SmsTransportError,
    SmsVendorError,
)
from airflow_provider_sms.hooks import base
from airflow_provider_sms.hooks.base import (
    BALANCE,
    INBOUND,
    PROCESS_SLOTS,
    REPORTS,
    SEND,
    SEND_TEMPLATE,
    TOKEN_CACHE,
    ConnectionConfig,
    SendOptions,
    parse_id,
)
from airflow_provider_sms.hooks.paasw_v2 import PaaswV2Hook

CONN_ID = "sms_base_test"
APP_ID = "0189457543"
SECRET = "gw7ewiz4eJ5646grg-TopSecret"
TOKEN = "bIAYGqdLHhyz0UyVnZAKgzvVGCx0dT8aNmLHIUUomLLg0PCR1"
TOKEN_2 = "k67jwkqzSqN6gtGHjo8KwrQrkfE4r6m4px5YEpjsWnYoBZxFw"
BASE = "http://openapi.gateway.paasw.com"
WIDE_ID = 39036632588910887018
MOBILES = ["13800138000", "13900139000"]


# ---------------------------------------------------------------------------- helpers


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str = CONN_ID, **fields: Any) -> str:
    """Put a paasw_v2 connection in the environment; ``extra`` entries are merged over fast retries."""
    extra = {"retry_wait": 0.01, **fields.pop("extra", {})}
    conn: dict[str, Any] = {"conn_type": "sms_paasw_v2", "login": APP_ID, "password": SECRET, "extra": extra}
    conn.update(fields)
    conn = {k: v for k, v in conn.items() if v is not None}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch) -> str:
    return set_conn(monkeypatch)


def ok(data: Any = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"code": 0, "message": "请求成功", **extra}
    if data is not None:
        body["data"] = data
    return {"json": body}


def token_ok(token: str = TOKEN, expires_in: int = 7200) -> dict[str, Any]:
    return ok({"expires_in": expires_in, "token": token})


def mock_token(requests_mock: Any, base_url: str = BASE, responses: list[dict[str, Any]] | None = None) -> Any:
    return requests_mock.post(f"{base_url}/message/token", responses or [token_ok()])


def mock_send(requests_mock: Any, responses: list[dict[str, Any]] | None = None) -> Any:
    return requests_mock.post(f"{BASE}/message/send", responses or [ok({"batchId": WIDE_ID})])


def mock_balance(requests_mock: Any, responses: list[dict[str, Any]] | None = None) -> Any:
    return requests_mock.post(f"{BASE}/message/balance", responses or [ok({"balance": 532})])


def refused(url: str = f"{BASE}/message/send") -> requests.exceptions.ConnectionError:
    """What requests raises when nothing listens on the port: the request never left this machine."""
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")  # type: ignore[arg-type]
    return requests.exceptions.ConnectionError(MaxRetryError(None, url, reason))  # type: ignore[arg-type]


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> Any:
    """Everything logged during the test: stdlib records and what Airflow's structlog prints."""
    caplog.set_level(logging.DEBUG)

    def collected() -> str:
        out, err = capfd.readouterr()
        return "\n".join([caplog.text, out, err])

    return collected


# ---------------------------------------------------------------------------- base URL and connection fields


def test_default_host_is_the_vendor_base_url(requests_mock: Any, conn: str) -> None:
    token = mock_token(requests_mock)
    hook = PaaswV2Hook(conn)
    assert hook.config.base_url == BASE
    hook._fetch_token()
    assert token.last_request.url == f"{BASE}/message/token"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"host": "https://gw.example.com:8443"}, "https://gw.example.com:8443"),
        ({"host": "https://gw.example.com:8443/"}, "https://gw.example.com:8443"),
        ({"host": "https://gw.example.com/api/v2/"}, "https://gw.example.com/api/v2"),
        ({"host": "gw.example.com"}, "http://gw.example.com"),
        ({"host": "gw.example.com", "schema": "https"}, "https://gw.example.com"),
        ({"host": "gw.example.com", "schema": "https", "port": 9443}, "https://gw.example.com:9443"),
        ({"host": "gw.example.com", "port": 8080}, "http://gw.example.com:8080"),
        ({"host": "https://gw.example.com", "port": 9443}, "https://gw.example.com:9443"),
        ({"host": "https://gw.example.com/api/", "port": 9443}, "https://gw.example.com:9443/api"),
        ({"host": "https://gw.example.com:8443", "port": 8443}, "https://gw.example.com:8443"),  # the form's port
        ({"host": "https://gw.example.com:8443", "port": 0}, "https://gw.example.com:8443"),  # 0: unset
        ({"host": "  http://10.0.0.5:8800/  "}, "http://10.0.0.5:8800"),
    ],
)
def test_base_url_forms(monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any], expected: str) -> None:
    conn_id = set_conn(monkeypatch, **fields)
    assert PaaswV2Hook(conn_id).config.base_url == expected


def test_a_port_that_contradicts_the_base_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The form shows Port on every connection type; one that differs from the URL's must not be ignored."""
    conn_id = set_conn(monkeypatch, host="https://gw.example.com:8443", port=9443)
    with pytest.raises(SmsConfigurationError, match=r"port 9443 differs from the port of its base URL"):
        _ = PaaswV2Hook(conn_id).config


def test_requests_go_to_the_configured_host_without_double_slash(
    requests_mock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn_id = set_conn(monkeypatch, host="https://gw.example.com:8443/")
    token = mock_token(requests_mock, "https://gw.example.com:8443")
    PaaswV2Hook(conn_id)._fetch_token()
    assert token.last_request.url == "https://gw.example.com:8443/message/token"


class _NoDefaultHost(PaaswV2Hook):
    default_host = None  # type: ignore[assignment]


def test_missing_host_without_a_default_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id = set_conn(monkeypatch)
    with pytest.raises(SmsConfigurationError, match=rf"{CONN_ID}.*has no host"):
        _ = _NoDefaultHost(conn_id).config


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"login": None}, ["App ID (login)"]),
        ({"password": None}, ["secret (password)"]),
        ({"login": None, "password": None}, ["App ID (login)", "secret (password)"]),
        ({"login": ""}, ["App ID (login)"]),
    ],
)
def test_missing_login_or_password_is_named(
    requests_mock: Any, monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any], missing: list[str]
) -> None:
    conn_id = set_conn(monkeypatch, **fields)
    hook = PaaswV2Hook(conn_id)
    with pytest.raises(SmsConfigurationError) as info:
        hook.send(MOBILES, "【签名】hello")
    for label in missing:
        assert label in str(info.value)
    assert CONN_ID in str(info.value)
    assert requests_mock.call_count == 0


def test_unknown_timezone_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id = set_conn(monkeypatch, extra={"timezone": "Mars/Olympus_Mons"})
    with pytest.raises(SmsConfigurationError, match="unknown timezone 'Mars/Olympus_Mons'"):
        _ = PaaswV2Hook(conn_id).config


def test_timezone_extra_changes_how_vendor_times_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    default = PaaswV2Hook(set_conn(monkeypatch))
    assert default.config.timezone == ZoneInfo("Asia/Shanghai")
    assert default.vendor_time("2024-01-02 08:00:00", ["%Y-%m-%d %H:%M:%S"]) == datetime(
        2024, 1, 2, 0, 0, tzinfo=timezone.utc
    )
    london = PaaswV2Hook(set_conn(monkeypatch, "sms_london", extra={"timezone": "Europe/London"}))
    assert london.vendor_time("2024-07-02 08:00:00", ["%Y-%m-%d %H:%M:%S"]) == datetime(
        2024, 7, 2, 7, 0, tzinfo=timezone.utc
    )


def test_timeouts_default(requests_mock: Any, conn: str) -> None:
    token = mock_token(requests_mock)
    PaaswV2Hook(conn)._fetch_token()
    assert token.last_request.timeout == (10.0, 30.0)


def test_timeout_extra_is_the_read_timeout(requests_mock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    token = mock_token(requests_mock)
    PaaswV2Hook(set_conn(monkeypatch, extra={"timeout": "45"}))._fetch_token()
    assert token.last_request.timeout == (10.0, 45.0)
    # A short read timeout also bounds the connect timeout.
    PaaswV2Hook(set_conn(monkeypatch, "sms_short", extra={"timeout": 0.5}))._fetch_token()
    assert token.last_request.timeout == (0.5, 0.5)


def test_timeout_kwarg_overrides_the_extra(requests_mock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    token = mock_token(requests_mock)
    PaaswV2Hook(set_conn(monkeypatch, extra={"timeout": "45"}), timeout=12)._fetch_token()
    assert token.last_request.timeout == (10.0, 12)


@pytest.mark.parametrize("name", ["timeout", "retries", "retry_wait"])
def test_non_numeric_number_extras_are_configuration_errors(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    hook = PaaswV2Hook(set_conn(monkeypatch, extra={name: "soon"}))
    with pytest.raises(SmsConfigurationError, match=rf"extra '{name}' must be a number, got 'soon'"):
        _ = hook.config.read_timeout, hook.retries, hook.retry_wait


def test_retries_come_from_kwarg_then_extra_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PaaswV2Hook(set_conn(monkeypatch)).retries == 3
    assert PaaswV2Hook(set_conn(monkeypatch, extra={"retries": "5"})).retries == 5
    assert PaaswV2Hook(set_conn(monkeypatch, extra={"retries": "5"}), retries=0).retries == 0
    assert PaaswV2Hook(set_conn(monkeypatch, extra={"retry_wait": "2"}), retry_wait=0.5).retry_wait == 0.5


def test_config_repr_hides_the_password(conn: str) -> None:
    config = PaaswV2Hook(conn).config
    assert SECRET not in repr(config)
    assert SECRET not in str(config)
    assert APP_ID in repr(config)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("Yes", True),
        ("1", True),
        ("on", True),
        ("false", False),
        ("0", False),
        ("no", False),
        (None, None),
        ("", None),
    ],
)
def test_extra_bool(value: Any, expected: bool | None) -> None:
    config = ConnectionConfig("c", BASE, "l", "p", {"flag": value}, ZoneInfo("UTC"), 1.0, 1.0)
    assert config.extra_bool("flag", True) is (True if expected is None else expected)
    assert config.extra_bool("flag", False) is (False if expected is None else expected)


def test_extra_treats_empty_as_missing() -> None:
    config = ConnectionConfig("c", BASE, "l", "p", {"a": "", "b": "x", "c": None}, ZoneInfo("UTC"), 1.0, 1.0)
    assert config.extra("a", "d") == "d"
    assert config.extra("b", "d") == "x"
    assert config.extra("c", "d") == "d"
    assert config.extra("zzz") is None


# ---------------------------------------------------------------------------- retry policy: reads


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_reads_are_retried_on_5xx_and_429_then_succeed(requests_mock: Any, conn: str, status: int) -> None:
    mock_token(requests_mock)
    balance = mock_balance(
        requests_mock,
        [{"status_code": status, "text": "<html>busy</html>"}] * 3 + [ok({"balance": 532})],
    )
    result = PaaswV2Hook(conn).get_balance()
    assert result.amount == 532
    assert balance.call_count == 4


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ConnectionError,
        requests.exceptions.ReadTimeout,
        requests.exceptions.ConnectTimeout,
    ],
)
def test_reads_are_retried_on_connection_errors_and_timeouts(requests_mock: Any, conn: str, exc: Any) -> None:
    mock_token(requests_mock)
    balance = mock_balance(requests_mock, [{"exc": exc}, {"exc": exc}, ok({"balance": 7})])
    assert PaaswV2Hook(conn).get_balance().amount == 7
    assert balance.call_count == 3


def test_read_retries_exhausted_on_5xx_give_a_response_error(requests_mock: Any, conn: str) -> None:
    mock_token(requests_mock)
    balance = mock_balance(requests_mock, [{"status_code": 503, "text": "<html>Service Unavailable</html>"}])
    with pytest.raises(SmsResponseError) as info:
        PaaswV2Hook(conn).get_balance()
    assert balance.call_count == 4  # the first attempt and 3 retries
    message = str(info.value)
    assert "balance query" in message
    assert "failed after 4 attempts" in message
    assert "HTTP 503" in message
    assert "Service Unavailable" in message
    assert info.value.status == 503


def test_retries_kwarg_sets_the_number_of_attempts(requests_mock: Any, conn: str) -> None:
    mock_token(requests_mock)
    balance = mock_balance(requests_mock, [{"status_code": 500, "text": "oops"}])
    with pytest.raises(SmsResponseError, match="failed after 2 attempts"):
        PaaswV2Hook(conn, retries=1).get_balance()
    assert balance.call_count == 2
    balance.reset()
    with pytest.raises(SmsResponseError, match="failed after 1 attempts"):
        PaaswV2Hook(conn, retries=0).get_balance()
    assert balance.call_count == 1


def test_read_retries_exhausted_on_connection_errors_give_a_transport_error(requests_mock: Any, conn: str) -> None:
    mock_token(requests_mock)
    balance = mock_balance(requests_mock, [{"exc": requests.exceptions.ConnectionError}])
    with pytest.raises(SmsTransportError, match=r"paasw_v2 balance query: .* after 4 attempts"):
        PaaswV2Hook(conn).get_balance()
    assert balance.call_count == 4


def test_reads_are_not_retried_on_4xx(requests_mock: Any, conn: str) -> None:
    mock_token(requests_mock)
    balance = mock_balance(requests_mock, [{"status_code": 404, "text": "<html>Not Found</html>"}])
    with pytest.raises(SmsResponseError, match=r"HTTP 404.*Not Found"):
        PaaswV2Hook(conn).get_balance()
    assert balance.call_count == 1


@pytest.mark.parametrize(
    "body",
    ["<html>maintenance</html>", "", "balance=532", '{"code":0,"data":{"balance":NaN}}', "Infinity"],
    ids=["html", "empty", "text", "nan", "infinity"],
)
def test_reads_are_retried_on_an_unreadable_200_then_succeed(
    requests_mock: Any, conn: str, slept: list[float], body: str
) -> None:
    mock_token(requests_mock)
    balance = mock_balance(requests_mock, [{"status_code": 200, "text": body}] * 2 + [ok({"balance": 532})])
    assert PaaswV2Hook(conn, retry_wait=1.0).get_balance().amount == 532
    assert balance.call_count == 3
    # the usual backoff, as for a 5xx: 1 then 2 seconds, each plus up to retry_wait of jitter
    assert len(slept) == 2
    for wait, base_wait in zip(slept, (1.0, 2.0), strict=True):
        assert base_wait <= wait <= base_wait + 1.0


def test_read_retries_exhausted_on_an_unreadable_200_name_the_attempts(requests_mock: Any, conn: str) -> None:
    mock_token(requests_mock)
    balance = mock_balance(requests_mock, [{"status_code": 200, "text": "<html>maintenance</html>"}])
    with pytest.raises(SmsResponseError) as info:
        PaaswV2Hook(conn, retries=1).get_balance()
    assert str(info.value) == (
        "paasw_v2 balance query: failed after 2 attempts: the reply is not JSON "
        "(HTTP 200; body starts: '<html>maintenance</html>')"
    )
    assert info.value.status == 200
    assert balance.call_count == 2


def test_read_retries_exhausted_on_5xx_name_the_status(requests_mock: Any, conn: str) -> None:
    mock_token(requests_mock)
    balance = mock_balance(requests_mock, [{"status_code": 502, "text": "<html>Bad Gateway</html>"}])
    with pytest.raises(SmsResponseError) as info:
        PaaswV2Hook(conn, retries=1).get_balance()
    assert str(info.value) == (
        "paasw_v2 balance query: failed after 2 attempts: HTTP 502 (HTTP 502; body starts: '<html>Bad Gateway</html>')"
    )
    assert balance.call_count == 2


def test_retry_attempts_are_logged(requests_mock: Any, conn: str, logs: Any) -> None:
    mock_token(requests_mock)
    mock_balance(requests_mock, [{"status_code": 502, "text": "bad gateway"}, ok({"balance": 1})])
    PaaswV2Hook(conn).get_balance()
    text = logs()
    assert "paasw_v2 balance query: attempt 1 failed (HTTP 502)" in text
    mock_balance(requests_mock, [{"status_code": 200, "text": "<html>portal</html>"}, ok({"balance": 1})])
    PaaswV2Hook(conn).get_balance()
    assert "paasw_v2 balance query: attempt 1 failed (the reply is not JSON)" in logs()


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The retry loop's waits, recorded instead of spent."""
    waits: list[float] = []
    monkeypatch.setattr(PaaswV2Hook, "retry_sleep", staticmethod(waits.append))
    return waits


def _http_date(seconds_ahead: float) -> str:
    from email.utils import format_datetime

    return format_datetime(datetime.now(timezone.utc) + timedelta(seconds=seconds_ahead), usegmt=True)


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        ("2.5", 2.5, 2.6),  # seconds: at least that long, whatever the backoff
        ("3600", 30.0, 30.0),  # capped: a vendor cannot park a task for an hour
        ("0", 0.0, 0.05),
        ("soon", 0.0, 0.05),  # unreadable: the backoff alone
        ("-5", 0.0, 0.05),
    ],
)
def test_retry_after_seconds_on_429(
    requests_mock: Any, conn: str, slept: list[float], retry_after: str, low: float, high: float
) -> None:
    mock_token(requests_mock)
    send = mock_send(
        requests_mock,
        [{"status_code": 429, "text": "slow down", "headers": {"Retry-After": retry_after}}, ok({"batchId": 1})],
    )
    PaaswV2Hook(conn, retry_wait=0.01).send(MOBILES, "【签名】hello")
    assert send.call_count == 2
    assert len(slept) == 1
    assert low <= slept[0] <= high


def test_retry_after_as_http_date_on_503(requests_mock: Any, conn: str, slept: list[float]) -> None:
    mock_token(requests_mock)
    balance = mock_balance(
        requests_mock,
        [
            {"status_code": 503, "text": "x", "headers": {"Retry-After": _http_date(5)}},
            {"status_code": 503, "text": "x", "headers": {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}},
            {"status_code": 503, "text": "x", "headers": {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}},
            ok({"balance": 1}),
        ],
    )
    PaaswV2Hook(conn, retry_wait=0.01).get_balance()
    assert balance.call_count == 4
    assert 3.5 < slept[0] <= 5.0  # until that moment
    assert slept[1] == 30.0  # capped
    assert slept[2] < 0.2  # a date in the past: the backoff alone


def test_retry_after_is_ignored_on_other_failures(requests_mock: Any, conn: str, slept: list[float]) -> None:
    mock_token(requests_mock)
    mock_balance(requests_mock, [{"exc": requests.exceptions.ConnectionError}, ok({"balance": 1})])
    PaaswV2Hook(conn, retry_wait=0.01).get_balance()
    assert len(slept) == 1
    assert slept[0] < 0.1


def test_backoff_doubles_from_retry_wait(requests_mock: Any, conn: str, slept: list[float]) -> None:
    mock_token(requests_mock)
    mock_balance(requests_mock, [{"status_code": 500, "text": "x"}] * 3 + [ok({"balance": 1})])
    PaaswV2Hook(conn, retry_wait=1.0).get_balance()
    assert len(slept) == 3
    # 1, 2, 4 seconds, each plus up to retry_wait of jitter
    for wait, base_wait in zip(slept, (1.0, 2.0, 4.0), strict=True):
        assert base_wait <= wait <= base_wait + 1.0


def test_tls_verification_is_explicit_per_request(
    requests_mock: Any, conn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests lets REQUESTS_CA_BUNDLE replace a session's verify setting; the hook passes it per request.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/bundle.pem")
    token = mock_token(requests_mock)
    hook = PaaswV2Hook(conn)
    hook.session.verify = False
    hook._fetch_token()
    assert token.last_request.verify is False
    hook.session.verify = "/etc/ssl/vendor-ca.pem"
    hook._fetch_token()
    assert token.last_request.verify == "/etc/ssl/vendor-ca.pem"


def test_plain_verify_uses_the_environments_ca_bundle_as_requests_would(
    requests_mock: Any, conn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corporate-ca.pem")
    token = mock_token(requests_mock)
    hook = PaaswV2Hook(conn)
    hook._fetch_token()
    assert token.last_request.verify == "/etc/ssl/corporate-ca.pem"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    fresh = PaaswV2Hook(conn)
    fresh._fetch_token()
    assert token.last_request.verify is True


def test_proxies_come_from_the_environment_once_per_session(conn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    hook = PaaswV2Hook(conn)
    assert hook.session.proxies.get("http") == "http://proxy.example:3128"
    assert hook.session.trust_env is False  # not read again on every call, and no netrc credentials
    host = hook.config.base_url.split("://", 1)[1].split("/")[0].split(":")[0]
    monkeypatch.setenv("NO_PROXY", host)
    assert PaaswV2Hook(conn).session.proxies == {}


def test_retry_wait_bounds_the_backoff(requests_mock: Any, conn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    monkeypatch.setattr(random, "uniform", lambda a, b: b)  # the worst jitter tenacity can draw
    mock_token(requests_mock)
    mock_balance(requests_mock, [{"status_code": 503, "text": "x"}] * 2 + [ok({"balance": 1})])
    started = time.monotonic()
    PaaswV2Hook(conn, retry_wait=0.01).get_balance()
    # 0.01 s, then about 0.02 s, plus jitter of the same order: far below half a second.
    assert time.monotonic() - started < 0.5


# ---------------------------------------------------------------------------- retry policy: sends


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_send_hit_by_5xx_is_not_retried_and_outcome_is_unknown(requests_mock: Any, conn: str, status: int) -> None:
    mock_token(requests_mock)
    send = mock_send(requests_mock, [{"status_code": status, "text": "<html>upstream error</html>"}])
    with pytest.raises(SmsOutcomeUnknownError) as info:
        PaaswV2Hook(conn).send(MOBILES, "【签名】hello")
    assert send.call_count == 1
    message = str(info.value)
    assert "send request #1" in message
    assert "(2 numbers)" in message
    assert f"HTTP {status}" in message
    assert "not resent" in message
    assert info.value.mobiles == tuple(MOBILES)
    assert info.value.description == "send request #1"


def test_send_read_timeout_is_not_retried_and_outcome_is_unknown(requests_mock: Any, conn: str) -> None:
    mock_token(requests_mock)
    send = mock_send(requests_mock, [{"exc": requests.exceptions.ReadTimeout}])
    with pytest.raises(SmsOutcomeUnknownError, match=r"send request #1 \(2 numbers\) is unknown: read timeout"):
        PaaswV2Hook(conn).send(MOBILES, "【签名】hello")
    assert send.call_count == 1


def test_send_dropped_connection_is_not_retried(requests_mock: Any, conn: str) -> None:
    mock_token(requests_mock)
    send = mock_send(requests_mock, [{"exc": requests.exceptions.ConnectionError("Connection aborted.")}])
    with pytest.raises(SmsOutcomeUnknownError, match="the connection was dropped before a reply came") as info:
        PaaswV2Hook(conn).send(MOBILES, "【签名】hello")
    assert send.call_count == 1
    assert "refused" not in str(info.value)  # a refused connection never carried the request; this one may have


def test_a_connection_never_made_says_why(requests_mock: Any, conn: str) -> None:
    """Refused, or a host name that does not resolve: the request surely never left, and the error says which."""
    from urllib3.exceptions import NameResolutionError

    mock_token(requests_mock)
    unresolved = NameResolutionError("gw.invalid", None, OSError("Name or service not known"))  # type: ignore[arg-type]
    mock_send(
        requests_mock,
        [{"exc": refused()}] * 4
        + [{"exc": requests.exceptions.ConnectionError(MaxRetryError(None, "/", unresolved))}] * 4,  # type: ignore[arg-type]
    )
    with pytest.raises(SmsTransportError, match="could not connect: connection refused after 4 attempts"):
        PaaswV2Hook(conn).send(MOBILES, "【签名】hello")
    with pytest.raises(SmsTransportError, match="could not connect: the host name does not resolve after 4 attempts"):
        PaaswV2Hook(conn).send(MOBILES, "【签名】hello")


@pytest.mark.parametrize(
    "failure",
    [
        {"exc": requests.exceptions.ConnectTimeout},
        {"exc": refused()},
        {"status_code": 429, "text": "Too Many Requests"},
    ],
    ids=["connect-timeout", "connection-refused", "429"],
)
def test_send_is_retried_when_surely_not_sent(requests_mock: Any, conn: str, failure: dict[str, Any]) -> None:
    mock_token(requests_mock)
    send = mock_send(requests_mock, [failure, failure, ok({"batchId": WIDE_ID})])
    receipts = PaaswV2Hook(conn).send(MOBILES, "【签名】hello")
    assert send.call_count == 3
    assert [r.batch_id for r in receipts] == [str(WIDE_ID)]


def test_send_that_never_connects_gives_a_transport_error_not_an_unknown_outcome(requests_mock: Any, conn: str) -> None:
    mock_token(requests_mock)
    send = mock_send(requests_mock, [{"exc": requests.exceptions.ConnectTimeout}])
    with pytest.raises(SmsTransportError, match="connect timeout after 4 attempts"):
        PaaswV2Hook(conn).send(MOBILES, "【签名】hello")
    assert send.call_count == 4


def test_send_429_exhausted_is_a_response_error(requests_mock: Any, conn: str) -> None:
    mock_token(requests_mock)
    send = mock_send(requests_mock, [{"status_code": 429, "text": "slow down"}])
    with pytest.raises(SmsResponseError, match="failed after 2 attempts"):
        PaaswV2Hook(conn, retries=1).send(MOBILES, "【签名】hello")
    assert send.call_count == 2


def test_send_unreadable_200_reply_is_an_unknown_outcome(requests_mock: Any, conn: str) -> None:
    mock_token(requests_mock)
    send = mock_send(requests_mock, [{"status_code": 200, "text": "<html>accepted?</html>"}])
    with pytest.raises(SmsOutcomeUnknownError, match="the reply is not JSON"):
        PaaswV2Hook(conn).send(MOBILES, "【签名】hello")
    assert send.call_count == 1


def test_token_failure_before_a_send_is_not_an_unknown_outcome(requests_mock: Any, conn: str) -> None:
    token = mock_token(requests_mock, responses=[{"status_code": 200, "text": "<html>portal</html>"}])
    send = mock_send(requests_mock)
    with pytest.raises(SmsResponseError) as info:
        PaaswV2Hook(conn).send(MOBILES, "【签名】hello")
    assert send.call_count == 0
    assert not isinstance(info.value, SmsOutcomeUnknownError)
    assert "token request: failed after 4 attempts: the reply is not JSON (HTTP 200" in str(info.value)
    assert token.call_count == 4  # the token call is a read: retried like a 5xx


def test_unknown_outcome_names_the_request_in_a_multi_request_send(requests_mock: Any, conn: str) -> None:
    mock_token(requests_mock)
    send = mock_send(requests_mock, [ok({"batchId": 1}), {"status_code": 502, "text": "bad gateway"}])
    hook = PaaswV2Hook(conn)
    numbers = [f"1380000{i:04d}" for i in range(1500)]
    planned = hook.plan_send(numbers, "【签名】hello")
    receipts = []
    with pytest.raises(SmsOutcomeUnknownError) as info:
        for receipt in hook.iter_send(planned):
            receipts.append(receipt)
    assert [r.batch_id for r in receipts] == ["1"]  # the first request's receipt was handed out before the error
    assert receipts[0].mobiles == tuple(numbers[:1000])
    assert info.value.description == "send request #2"
    assert info.value.mobiles == tuple(numbers[1000:])
    assert "(500 numbers)" in str(info.value)
    assert send.call_count == 2


# ---------------------------------------------------------------------------- tokens


def test_token_is_cached_across_hook_instances(requests_mock: Any, conn: str) -> None:
    token = mock_token(requests_mock)
    send = mock_send(requests_mock)
    PaaswV2Hook(conn).send(MOBILES, "【签名】one")
    PaaswV2Hook(conn).send(MOBILES, "【签名】two")
    assert token.call_count == 1
    assert send.call_count == 2
    assert [r.json()["token"] for r in send.request_history] == [TOKEN, TOKEN]


def test_token_cache_is_per_account(requests_mock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    token = mock_token(requests_mock, responses=[token_ok(TOKEN), token_ok(TOKEN_2)])
    mock_balance(requests_mock)
    PaaswV2Hook(set_conn(monkeypatch)).get_balance()
    PaaswV2Hook(set_conn(monkeypatch, "sms_other", login="0189457999")).get_balance()
    assert token.call_count == 2
    assert [r.json()["appId"] for r in token.request_history] == [APP_ID, "0189457999"]


def test_token_close_to_expiry_is_not_reused(requests_mock: Any, conn: str) -> None:
    token = mock_token(requests_mock, responses=[token_ok(expires_in=60)])
    mock_balance(requests_mock)
    hook = PaaswV2Hook(conn)
    hook.get_balance()
    hook.get_balance()
    assert token.call_count == 2


def test_token_is_refreshed_once_after_an_error_reply_on_a_cached_token(requests_mock: Any, conn: str) -> None:
    token = mock_token(requests_mock, responses=[token_ok(TOKEN), token_ok(TOKEN_2)])
    send = mock_send(
        requests_mock,
        [ok({"batchId": 1}), {"json": {"code": 40002, "message": "token无效或已过期"}}, ok({"batchId": 2})],
    )
    PaaswV2Hook(conn).send(MOBILES, "【签名】one")
    receipts = PaaswV2Hook(conn).send(MOBILES, "【签名】two")
    assert [r.batch_id for r in receipts] == ["2"]
    assert token.call_count == 2
    assert [r.json()["token"] for r in send.request_history] == [TOKEN, TOKEN, TOKEN_2]
    # The new token is cached for the next call.
    PaaswV2Hook(conn).send(MOBILES, "【签名】three")
    assert token.call_count == 2
    assert send.last_request.json()["token"] == TOKEN_2


def test_token_is_not_refreshed_twice(requests_mock: Any, conn: str) -> None:
    token = mock_token(requests_mock, responses=[token_ok(TOKEN), token_ok(TOKEN_2)])
    balance = mock_balance(
        requests_mock, [ok({"balance": 1})] + [{"json": {"code": 40002, "message": "token无效或已过期"}}] * 5
    )
    hook = PaaswV2Hook(conn)
    hook.get_balance()
    with pytest.raises(SmsVendorError) as info:
        hook.get_balance()
    assert info.value.code == "40002"
    assert token.call_count == 2
    assert balance.call_count == 3  # first success, the failing call, and one retry with a fresh token


def test_error_on_a_fresh_token_is_not_retried(requests_mock: Any, conn: str) -> None:
    token = mock_token(requests_mock, responses=[token_ok(TOKEN), token_ok(TOKEN_2)])
    send = mock_send(requests_mock, [{"json": {"code": 40003, "message": "参数错误"}}])
    with pytest.raises(SmsVendorError, match="code 40003"):
        PaaswV2Hook(conn).send(MOBILES, "【签名】one")
    assert token.call_count == 1
    assert send.call_count == 1


def test_token_error_reply_is_a_vendor_error(requests_mock: Any, conn: str) -> None:
    mock_token(requests_mock, responses=[{"json": {"code": 40001, "message": "appId或secret错误"}}])
    send = mock_send(requests_mock)
    with pytest.raises(SmsVendorError) as info:
        PaaswV2Hook(conn).send(MOBILES, "【签名】one")
    assert info.value.code == "40001"
    assert info.value.operation == "token request"
    assert "appId或secret错误" in str(info.value)
    assert send.call_count == 0


def test_derived_secrets_are_registered_with_the_masker(
    requests_mock: Any, conn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import airflow.sdk.log

    masked: list[str] = []
    monkeypatch.setattr(airflow.sdk.log, "mask_secret", masked.append)
    mock_token(requests_mock)
    mock_balance(requests_mock)
    PaaswV2Hook(conn).get_balance()
    assert SECRET in masked
    assert TOKEN in masked


# ---------------------------------------------------------------------------- send options


def test_unknown_send_option_is_rejected_before_any_request(requests_mock: Any, conn: str) -> None:
    with pytest.raises(SmsInvalidRequestError, match=r"unknown send option\(s\) \['colour'\]"):
        PaaswV2Hook(conn).send(MOBILES, "【签名】hi", colour="red")
    assert requests_mock.call_count == 0


@pytest.mark.parametrize("option", ["client_ref", "sender_id"])
def test_unsupported_send_option_is_rejected_before_any_request(requests_mock: Any, conn: str, option: str) -> None:
    with pytest.raises(SmsInvalidRequestError, match=rf"paasw_v2 does not support the send option\(s\) \['{option}'\]"):
        PaaswV2Hook(conn).send(MOBILES, "【签名】hi", **{option: "x"})
    assert requests_mock.call_count == 0


def test_empty_options_count_as_not_given(requests_mock: Any, conn: str) -> None:
    mock_token(requests_mock)
    send = mock_send(requests_mock)
    PaaswV2Hook(conn).send(MOBILES, "【签名】hi", client_ref="", sender_id=None, ext_no="")
    assert "extNo" not in send.last_request.json()


def test_ext_no_must_be_digits(requests_mock: Any, conn: str) -> None:
    with pytest.raises(SmsInvalidRequestError, match="ext_no must be digits, got '88a'"):
        PaaswV2Hook(conn).send(MOBILES, "【签名】hi", ext_no="88a")
    assert requests_mock.call_count == 0


def test_naive_scheduled_at_is_rejected_before_any_request(requests_mock: Any, conn: str) -> None:
    with pytest.raises(SmsInvalidRequestError, match="scheduled_at must be a timezone-aware datetime"):
        PaaswV2Hook(conn).send(MOBILES, "【签名】hi", scheduled_at=datetime(2030, 1, 1, 8, 0))
    with pytest.raises(SmsInvalidRequestError, match="scheduled_at must be a timezone-aware datetime"):
        PaaswV2Hook(conn).send(MOBILES, "【签名】hi", scheduled_at="2030-01-01 08:00:00")
    assert requests_mock.call_count == 0


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (datetime(2030, 1, 1, 0, 0, 0, tzinfo=timezone.utc), "2030-01-01 08:00:00"),
        (datetime(2030, 1, 1, 20, 30, 15, tzinfo=timezone.utc), "2030-01-02 04:30:15"),
        (datetime(2030, 1, 1, 8, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai")), "2030-01-01 08:00:00"),
        (datetime(2030, 1, 1, 9, 0, 0, tzinfo=timezone(timedelta(hours=-5))), "2030-01-01 22:00:00"),
    ],
)
def test_aware_scheduled_at_is_sent_in_shanghai_time(
    requests_mock: Any, conn: str, when: datetime, expected: str
) -> None:
    mock_token(requests_mock)
    send = mock_send(requests_mock)
    PaaswV2Hook(conn).send(MOBILES, "【签名】hi", scheduled_at=when)
    assert send.last_request.json()["time"] == expected


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("verification", "1"),
        ("notification", "2"),
        ("marketing", "3"),
        ("Marketing", "3"),
        (" 1 ", "1"),
        ("2", "2"),
    ],
)
def test_kind_names_become_codes(requests_mock: Any, conn: str, kind: str, code: str) -> None:
    mock_token(requests_mock)
    send = mock_send(requests_mock)
    PaaswV2Hook(conn).send(MOBILES, "【签名】hi", kind=kind)
    assert send.last_request.json()["productId"] == code


@pytest.mark.parametrize("kind", ["spam", "4", "0"])
def test_unknown_kind_is_rejected(requests_mock: Any, conn: str, kind: str) -> None:
    with pytest.raises(SmsInvalidRequestError, match=rf"unknown message kind '{kind}'"):
        PaaswV2Hook(conn).send(MOBILES, "【签名】hi", kind=kind)
    assert requests_mock.call_count == 0


def test_empty_content_and_no_numbers_are_rejected(requests_mock: Any, conn: str) -> None:
    hook = PaaswV2Hook(conn)
    with pytest.raises(SmsInvalidRequestError, match="message content is empty"):
        hook.send(MOBILES, "   ")
    with pytest.raises(SmsInvalidRequestError, match="no mobile numbers"):
        hook.send(" , ;", "【签名】hi")
    with pytest.raises(SmsInvalidNumbersError) as info:
        hook.send(["13800138000", "12345"], "【签名】hi")
    assert info.value.invalid == ["12345"]
    assert "1 of 2 mobile numbers are invalid: '12345'" in str(info.value)
    assert requests_mock.call_count == 0


def test_invalid_number_list_is_shortened_in_the_message(conn: str) -> None:
    bad = [f"bad{i}" for i in range(25)]
    with pytest.raises(SmsInvalidNumbersError) as info:
        PaaswV2Hook(conn).plan_send(bad, "【签名】hi")
    assert len(info.value.invalid) == 25
    assert "'bad19'" in str(info.value)
    assert "'bad20'" not in str(info.value)
    assert "and 5 more" in str(info.value)


# ---------------------------------------------------------------------------- planning


class _WithClientRef(PaaswV2Hook):
    supported_options: ClassVar[frozenset[str]] = PaaswV2Hook.supported_options | {"client_ref"}


class _CharCapped(PaaswV2Hook):
    max_numbers_per_request = 4
    max_mobiles_chars = 12 * 3 - 1


def test_plan_is_deterministic_and_keys_each_request(conn: str) -> None:
    hook = _WithClientRef(conn)
    numbers = [f"1380000{i:04d}" for i in range(2500)]
    plan = hook.plan_send(numbers, "【签名】hi", client_ref="job-7")
    assert [len(r.mobiles) for r in plan] == [1000, 1000, 500]
    assert [r.index for r in plan] == [0, 1, 2]
    assert [r.client_ref for r in plan] == ["job-7-1", "job-7-2", "job-7-3"]
    assert [r.description for r in plan] == ["send request #1", "send request #2", "send request #3"]
    assert plan == hook.plan_send(numbers, "【签名】hi", client_ref="job-7")
    single = hook.plan_send(numbers[:3], "【签名】hi", client_ref="job-7")
    assert [r.client_ref for r in single] == ["job-7"]
    assert hook.plan_send(numbers[:3], "【签名】hi")[0].client_ref is None


def test_plan_cuts_at_the_character_cap(conn: str) -> None:
    plan = _CharCapped(conn).plan_send([f"1380000{i:04d}" for i in range(7)], "【签名】hi")
    assert [len(r.mobiles) for r in plan] == [3, 3, 1]


def test_template_request_description(conn: str) -> None:
    plan = PaaswV2Hook(conn).plan_send(MOBILES, None, template_id="4289538897476608", params={"code": "1"})
    assert plan[0].description == "template 4289538897476608 request #1"
    assert plan[0].content is None


def test_send_options_given() -> None:
    assert SendOptions().given() == set()
    assert SendOptions(signature="x", ext_no="", kind="1").given() == {"signature", "kind"}


# ---------------------------------------------------------------------------- capabilities


def test_supports() -> None:
    hook = PaaswV2Hook("unused")
    for feature in (SEND, SEND_TEMPLATE, REPORTS, INBOUND, BALANCE):
        assert hook.supports(feature)
    assert not hook.supports("teleport")


class _SendOnly(PaaswV2Hook):
    features = frozenset({SEND})


@pytest.mark.parametrize(
    ("call", "label"),
    [
        (lambda h: h.fetch_reports(), "delivery reports"),
        (lambda h: h.fetch_inbound(), "inbound (MO) messages"),
        (lambda h: h.get_balance(), "balance queries"),
        (lambda h: h.send_template(MOBILES, "123", {"a": "b"}), "template messages"),
    ],
)
def test_unsupported_features_raise_not_supported(requests_mock: Any, conn: str, call: Any, label: str) -> None:
    hook = _SendOnly(conn)
    assert not hook.supports(REPORTS)
    with pytest.raises(SmsNotSupportedError, match=re.escape(f"paasw_v2 does not support {label}")) as info:
        call(hook)
    assert isinstance(info.value, NotImplementedError)
    assert requests_mock.call_count == 0


# ---------------------------------------------------------------------------- test_connection


def test_test_connection_success(requests_mock: Any, conn: str) -> None:
    mock_token(requests_mock)
    ok_, message = PaaswV2Hook(conn).test_connection()
    assert ok_ is True
    assert message == f"token issued for appId {APP_ID} at {BASE}"


def test_test_connection_rejected_credentials(requests_mock: Any, conn: str) -> None:
    mock_token(requests_mock, responses=[{"json": {"code": 40001, "message": "appId或secret错误"}}])
    ok_, message = PaaswV2Hook(conn).test_connection()
    assert ok_ is False
    assert message.startswith("SmsVendorError: ")
    assert "code 40001" in message
    assert "appId or secret rejected" in message
    assert SECRET not in message


def test_test_connection_garbage_and_unreachable(requests_mock: Any, conn: str) -> None:
    token = mock_token(requests_mock, responses=[{"status_code": 200, "text": "<html>portal login</html>"}])
    ok_, message = PaaswV2Hook(conn).test_connection()
    assert ok_ is False
    assert message.startswith("SmsResponseError: ")
    expected = "failed after 4 attempts: the reply is not JSON (HTTP 200; body starts: '<html>portal login</html>')"
    assert expected in message
    assert token.call_count == 4
    requests_mock.post(f"{BASE}/message/token", exc=requests.exceptions.ConnectTimeout)
    ok_, message = PaaswV2Hook(conn, retries=0).test_connection()
    assert ok_ is False
    assert message.startswith("SmsTransportError: ")


def test_test_connection_names_missing_credentials(requests_mock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ok_, message = PaaswV2Hook(set_conn(monkeypatch, password=None)).test_connection()
    assert ok_ is False
    assert "SmsConfigurationError" in message
    assert "secret (password)" in message
    assert requests_mock.call_count == 0


# ---------------------------------------------------------------------------- secrets


def test_secrets_never_in_errors_or_logs(requests_mock: Any, conn: str, logs: Any) -> None:
    mock_token(requests_mock, responses=[token_ok(TOKEN), token_ok(TOKEN_2)])
    mock_send(
        requests_mock,
        [
            ok({"batchId": WIDE_ID}),
            {"status_code": 502, "text": "<html>502 Bad Gateway</html>"},
            {"json": {"code": 40002, "message": "token无效或已过期"}},
            {"json": {"code": 40002, "message": "token无效或已过期"}},
        ],
    )
    mock_balance(requests_mock, [{"status_code": 503, "text": "busy"}])
    hook = PaaswV2Hook(conn)
    errors: list[str] = [repr(hook.config), str(hook.config)]
    receipts = hook.send(MOBILES, "【签名】ok")
    errors.append(repr(receipts))
    errors.append(json.dumps([r.to_dict(include_raw=True) for r in receipts], default=str))
    for call in (
        lambda: hook.send(MOBILES, "【签名】outcome unknown"),
        lambda: hook.send(MOBILES, "【签名】token refused twice"),
        hook.get_balance,
    ):
        with pytest.raises(Exception) as info:
            call()
        errors.append(f"{type(info.value).__name__}: {info.value} {info.value!r}")
    errors.append(hook.test_connection()[1])
    text = "\n".join([*errors, logs()])
    assert "attempt 1 failed" in text  # the log capture works: the retry warnings are in it
    for secret in (SECRET, md5(SECRET), TOKEN, TOKEN_2):
        assert secret not in text


def test_token_reply_body_never_in_errors(requests_mock: Any, conn: str) -> None:
    mock_token(requests_mock, responses=[{"json": {"message": "ok", "data": {"token": TOKEN, "expires_in": 7200}}}])
    with pytest.raises(SmsResponseError) as info:
        PaaswV2Hook(conn).get_balance()
    assert TOKEN not in str(info.value)


# ---------------------------------------------------------------------------- helpers vendor modules use


def test_parse_id() -> None:
    assert parse_id(WIDE_ID, field_name="batchId") == "39036632588910887018"
    assert parse_id(0, field_name="batchId") == "0"
    assert parse_id(" 123 ", field_name="batchId") == "123"
    assert parse_id("abc-1", field_name="msgId") == "abc-1"


@pytest.mark.parametrize("value", [1.5e19, 39036632588910887018.0, None, True, "", "  ", [1], {"a": 1}])
def test_parse_id_rejects_non_ids(value: Any) -> None:
    with pytest.raises(ValueError, match="batchId"):
        parse_id(value, field_name="batchId")


def test_parse_id_rejects_decimal_floats_from_parse_json() -> None:
    from decimal import Decimal

    with pytest.raises(ValueError, match="a float would lose digits"):
        parse_id(Decimal("39036632588910887018.0"), field_name="batchId")


def test_vendor_time_and_format(conn: str) -> None:
    hook = PaaswV2Hook(conn)
    formats = ["%Y%m%d%H%M%S", "%Y-%m-%d %H:%M:%S"]
    assert hook.vendor_time("2024-03-01 07:59:59", formats) == datetime(2024, 2, 29, 23, 59, 59, tzinfo=timezone.utc)
    assert hook.vendor_time("20240301080000", formats) == datetime(2024, 3, 1, 0, 0, tzinfo=timezone.utc)
    assert hook.vendor_time(" 20240301080000 ", formats) == datetime(2024, 3, 1, 0, 0, tzinfo=timezone.utc)
    assert hook.vendor_time("", formats) is None
    assert hook.vendor_time(None, formats) is None
    with pytest.raises(ValueError, match="'yesterday' matches none of the formats"):
        hook.vendor_time("yesterday", formats)
    when = datetime(2024, 2, 29, 23, 59, 59, tzinfo=timezone.utc)
    assert hook.format_vendor_time(when, "%Y-%m-%d %H:%M:%S") == "2024-03-01 07:59:59"
    assert hook.format_vendor_time(when, "%Y%m%d%H%M%S") == "20240301075959"


def test_signed_content(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = PaaswV2Hook(set_conn(monkeypatch))
    assert hook.signed_content("hi", "圆通") == "【圆通】hi"
    assert hook.signed_content("hi", "【圆通】") == "【圆通】hi"
    assert hook.signed_content("【圆通】hi", "圆通") == "【圆通】hi"
    assert hook.signed_content("hi", None) == "hi"
    signed = PaaswV2Hook(set_conn(monkeypatch, "sms_signed", extra={"sign": "顺丰"}))
    assert signed.signed_content("hi", None) == "【顺丰】hi"
    assert signed.signed_content("hi", "圆通") == "【圆通】hi"  # the option beats the extra


def test_process_slots_keep_the_interval_per_key() -> None:
    assert PROCESS_SLOTS.reserve_slot("acct|report pull", 5.0) == 0
    assert 4.5 < PROCESS_SLOTS.reserve_slot("acct|report pull", 5.0) <= 5.0
    assert PROCESS_SLOTS.reserve_slot("acct|inbound pull", 5.0) == 0  # another endpoint has its own slot
    assert 9.5 < PROCESS_SLOTS.reserve_slot("acct|report pull", 5.0) <= 10.0
    PROCESS_SLOTS.slot_finished("acct|inbound pull", 30.0)  # counted from the reply when that is later
    assert 29.5 < PROCESS_SLOTS.reserve_slot("acct|inbound pull", 5.0) <= 30.0


def test_the_request_rate_extra_paces_every_attempt_of_the_account(
    monkeypatch: pytest.MonkeyPatch, requests_mock: Any
) -> None:
    clock = [1000.0]  # a clock that moves only when the hook sleeps: the test does not depend on load
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(base.time, "sleep", sleep)
    monkeypatch.setattr(base.time, "monotonic", lambda: clock[0])
    TOKEN_CACHE.clear()  # the token request is one of the paced three
    hook = PaaswV2Hook(set_conn(monkeypatch, "sms_paced", extra={"max_requests_per_second": 4, "retry_wait": 0}))
    requests_mock.post(
        f"{hook.config.base_url}/message/balance",
        [{"status_code": 503}, {"json": {"code": 0, "data": {"balance": 5}}}],
    )
    requests_mock.post(f"{hook.config.base_url}/message/token", json={"code": 0, "data": {"token": "t" * 16}})
    hook.get_balance()  # token, a 503, its retry: three requests, a quarter of a second apart
    assert [s for s in slept if s > 0] == [0.25, 0.25]
    with pytest.raises(SmsConfigurationError, match="max_requests_per_second"):
        _ = PaaswV2Hook(set_conn(monkeypatch, "sms_bad", extra={"max_requests_per_second": -1})).requests_per_second


def test_vendor_error_carries_the_meaning(conn: str) -> None:
    error = PaaswV2Hook(conn).vendor_error(1009, "余额不足", {"1009": "balance too low"}, "send request #1")
    assert isinstance(error, SmsVendorError)
    assert error.code == "1009"
    assert error.meaning == "balance too low"
    assert str(error) == "paasw_v2 rejected send request #1: code 1009 (balance too low) - vendor says: 余额不足"
    unknown = PaaswV2Hook(conn).vendor_error("77", None, {}, "balance query")
    assert str(unknown) == "paasw_v2 rejected balance query: code 77"


def test_session_is_reused_and_closed(conn: str) -> None:
    hook = PaaswV2Hook(conn)
    session = hook.get_conn()
    assert hook.session is session
    assert session.headers["User-Agent"] == "airflow-provider-sms"
    hook.close()
    assert hook.session is not session


def test_get_sms_hook_looks_the_connection_up_once(conn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``get_sms_hook`` reads the connection to choose the class; the hook uses that reading, not a second."""
    from airflow.sdk import BaseHook

    from airflow_provider_sms.hooks import get_sms_hook

    real = BaseHook.get_connection
    looked_up: list[str] = []

    def counting(cls: Any, conn_id: str) -> Any:
        looked_up.append(conn_id)
        return real(conn_id)

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(counting))
    hook = get_sms_hook(conn)
    assert hook.config.login == APP_ID and hook.for_thread().config.base_url == BASE
    assert looked_up == [conn]
    assert hook._connection_read is None  # the connection object (its password) is not kept once read
