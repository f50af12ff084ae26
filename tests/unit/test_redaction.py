"""Every form a secret takes on the wire is redacted from quoted reply bodies."""

from __future__ import annotations

import hashlib

from airflow_provider_sms.errors import SmsResponseError, body_preview
from airflow_provider_sms.hooks.base import mask
from airflow_provider_sms.redaction import redact, secret_forms


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


def test_short_values_are_not_redacted_from_text() -> None:
    mask("ab1")  # too short to tell from ordinary text; Airflow's masker skips such values too
    assert redact("ab1 stays") == "ab1 stays"
