"""Every form a secret takes on the wire is redacted from quoted reply bodies."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import pytest

from airflow_provider_sms.errors import SmsResponseError, body_preview
from airflow_provider_sms.hooks.base import mask
from airflow_provider_sms.redaction import SHORT_VALUE_WARNING, redact, remember_digest, secret_forms


def test_every_wire_form_of_a_secret_is_redacted() -> None:
    secret = "p@ss word/+=unit-test-1"
    digest = hashlib.md5(secret.encode()).hexdigest()
    assert secret_forms(secret) == {
        secret,
        "p%40ss%20word%2F%2B%3Dunit-test-1",
        "p%40ss+word%2F%2B%3Dunit-test-1",
        digest,
        digest.upper(),
    }
    mask(secret)
    text = " | ".join(sorted(secret_forms(secret)))
    assert redact(text) == " | ".join(["***"] * 5)
    error = SmsResponseError("paasw_v1", "balance query", "the reply is not JSON", 200, f"<p>sign={digest.upper()}</p>")
    assert digest.upper() not in str(error) and "sign=***" in str(error)
    assert body_preview(f"url?k={secret}&x=1") == "url?k=***&x=1"


def test_per_request_digests_cost_little_to_remember_and_are_all_redacted() -> None:
    """A cloud_mas send remembers one MAC per request. Compiling the pattern at each one (and handing each to
    Airflow's masker, which does the same) made 400 requests spend two minutes; now the pattern is compiled
    when text is first redacted."""
    import time

    macs = [hashlib.md5(f"unit-test-mac-{i}".encode()).hexdigest() for i in range(2000)]
    started = time.perf_counter()
    for mac in macs:
        remember_digest(mac)
    assert time.perf_counter() - started < 1.0
    echoed = f"<p>mac={macs[0]} MAC={macs[-1].upper()} other={macs[1000]}</p>"
    assert redact(echoed) == "<p>mac=*** MAC=*** other=***</p>"
    remember_digest("ab")  # too short to tell from ordinary text
    assert redact("ab stays") == "ab stays"


def test_short_values_are_not_redacted_from_text() -> None:
    mask("ab1")  # too short to tell from ordinary text; Airflow's masker skips such values too
    assert redact("ab1 stays") == "ab1 stays"


class _Records(logging.Handler):
    """Every record that reaches Airflow's secrets-masker logger, after its filters."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def masker_warnings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """What Airflow's masker warns, with its warn-once flag cleared so that the first short value would warn."""
    from airflow.sdk._shared.secrets_masker import secrets_masker

    monkeypatch.setattr(secrets_masker.SecretsMasker, "_has_warned_short_secret", False)
    handler = _Records()
    logger = logging.getLogger(secrets_masker.__name__)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def test_a_short_signature_is_not_reported_as_a_secret(
    monkeypatch: pytest.MonkeyPatch, masker_warnings: list[str]
) -> None:
    from airflow.sdk.log import mask_secret

    from airflow_provider_sms.hooks import get_sms_hook

    mask_secret({"sign": "Acme"})  # what Airflow does with every extra of a connection it reads
    assert any(m.startswith(SHORT_VALUE_WARNING) for m in masker_warnings), "the warning is not captured"
    from airflow.sdk._shared.secrets_masker import secrets_masker

    secrets_masker.SecretsMasker._has_warned_short_secret = False  # monkeypatch restores it
    masker_warnings.clear()

    password, push_secret = "unit-pass-7f3a9c", "unit-push-5b2e8d"
    extra = {"sign": "Acme", "pwd_case": "upper", "callback_secret": push_secret}
    conn = {"conn_type": "sms_account_md5", "host": "http://127.0.0.1:9", "login": "acc", "password": password}
    monkeypatch.setenv("AIRFLOW_CONN_SMS_SHORT_SIGN", json.dumps({**conn, "extra": extra}))
    hook = get_sms_hook("sms_short_sign")
    assert hook.config.extra("sign") == "Acme"
    assert not any(m.startswith(SHORT_VALUE_WARNING) for m in masker_warnings), masker_warnings

    masked = airflow_redact(f"sign=Acme pwd={password} md5={md5(password)} push={push_secret} q={quote('a b')}")
    assert masked == "sign=Acme pwd=*** md5=*** push=*** q=a%20b"
    assert redact(f"{md5(password).upper()} {quote_plus(push_secret + ' ')}") == "*** ***+"


def test_a_short_password_is_named_not_shown(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from airflow_provider_sms.hooks import get_sms_hook

    conn = {"conn_type": "sms_paasw_v2", "host": "http://127.0.0.1:9", "login": "app", "password": "pw9"}
    monkeypatch.setenv("AIRFLOW_CONN_SMS_SHORT_PASSWORD", json.dumps(conn))
    with caplog.at_level(logging.WARNING, logger="airflow_provider_sms"):
        assert get_sms_hook("sms_short_password").config.password == "pw9"
    assert "'sms_short_password': its password is shorter than 5 characters" in caplog.text
    assert "pw9" not in caplog.text


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def airflow_redact(text: str) -> str:
    from airflow.sdk._shared.secrets_masker import redact as redact_in_logs

    return str(redact_in_logs(text))
