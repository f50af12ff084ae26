"""intl's numbers: mainland mobiles by the domestic rule, every other number by ``phonenumbers``.

What a valid international number is (a mobile of its country, by length and prefix), what is refused
and how the error says why, that a refused number stops the send before any request, and that
``phonenumbers`` stays out of a DAG file's import and out of a list of mainland mobiles.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import phonenumbers
import pytest

from airflow_provider_sms.errors import SmsInvalidNumbersError
from airflow_provider_sms.hooks.intl import IntlSmsHook
from airflow_provider_sms.numbers import InvalidNumber, international_mobile, normalize_mobiles

REPO = Path(__file__).resolve().parents[2]
SEND_URL = "http://gw.test:9118/api/v1/international/sms/send"


@pytest.mark.parametrize(
    ("raw", "wire"),
    [
        ("+44 7400 123456", "447400123456"),  # GB
        ("0044 7400 123456", "447400123456"),
        ("+44 (0)7400 123456", "447400123456"),  # the trunk 0 people write is dropped, as E.164 has it
        ("+1 (415) 555-0100", "14155550100"),  # US: fixed-line-or-mobile, the plan does not tell them apart
        ("14155550100", "14155550100"),  # without +: the country code is read first, as the vendor reads it
        ("+1 204 234 5678", "12042345678"),  # Canada, the same +1
        ("+49 151 23456789", "4915123456789"),  # DE
        ("+91 98765 43210", "919876543210"),  # IN
        ("+65 8123 4567", "6581234567"),  # SG
        ("+852 9123 4567", "85291234567"),  # HK
        ("+33 6 12 34 56 78", "33612345678"),  # FR
        ("+61 412 345 678", "61412345678"),  # AU
        ("+39 312 345 6789", "393123456789"),  # IT
        ("2348031000010", "2348031000010"),  # NG, the vendor document's example
        ("+86 138 0013 8000", "8613800138000"),  # CN: the domestic rule, no phonenumbers
        ("008613800138000", "8613800138000"),
    ],
)
def test_valid_mobiles_of_several_countries_go_out_as_e164_digits(raw: str, wire: str) -> None:
    assert international_mobile(raw) == wire
    assert not isinstance(international_mobile(raw), InvalidNumber)
    parsed = phonenumbers.parse("+" + wire)
    assert phonenumbers.is_valid_number(parsed)  # what the number_type() shortcut stands for
    assert phonenumbers.number_type(parsed) in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        # not a mobile: the country is named, and what the number is instead
        ("+44 20 7946 0958", "United Kingdom (GB): it is a fixed-line number, which cannot receive SMS"),
        ("+49 30 123456", "Germany (DE): it is a fixed-line number"),
        ("+65 6123 4567", "Singapore (SG): it is a fixed-line number"),
        ("+86 10 1234 5678", "China (CN): it is a fixed-line number"),
        ("+1 800 555 0100", "United States (US): it is a toll-free number"),
        ("+44 909 876 5432", "United Kingdom (GB): it is a premium-rate number"),
        ("+49 1801 234567", "Germany (DE): it is a shared-cost number"),
        ("+44 56 1234 5678", "United Kingdom (GB): it is a VoIP number"),
        # wrong length, with the length a mobile there has
        ("+44 7400 12345", "too short (9 digits after +44; mobile numbers there have 10)"),
        ("+44 7400 1234567", "too long (11 digits after +44; mobile numbers there have 10)"),
        ("+91 98765 4321", "India (IN): too short (9 digits after +91; mobile numbers there have 10)"),
        ("+49 151 234", "Germany (DE): too short (6 digits after +49; mobile numbers there have 10 or 11)"),
        # a prefix not in use
        ("+2346568526367", "Nigeria (NG): the length fits, but no number there begins that way"),
        ("8612345678901", "China (CN): the length fits, but no number there begins that way"),
        # no country has the code
        ("+999 123 456 789", "does not start with a country calling code (+999… is none)"),
        # not a number at all
        ("+86 138 0013 800x", "is not a phone number in international form"),
        ("12", "is not a phone number in international form"),
    ],
)
def test_invalid_numbers_say_why_naming_the_country(raw: str, reason: str) -> None:
    result = international_mobile(raw)
    assert isinstance(result, InvalidNumber)
    assert result == raw.strip()  # still the number as given, for the error's list
    assert reason in result.reason


def test_a_bare_mainland_mobile_is_read_as_the_vendor_reads_it_and_refused_with_a_hint() -> None:
    # 13800138000 on intl's wire is +1 380 013 8000, no number of the 25 countries of +1
    result = international_mobile("13800138000")
    assert isinstance(result, InvalidNumber)
    assert result.reason.startswith("is not a valid mobile number for United States (US) or another of the 25")
    assert result.reason.endswith("if it is a mainland China mobile, write it with its country code: 8613800138000")


def test_the_error_lists_each_number_with_its_reason_and_nothing_is_sent() -> None:
    valid, invalid = normalize_mobiles(["447400123456", "+44 20 7946 0958", "+65 6123 4567"], international=True)
    error = SmsInvalidNumbersError("intl", invalid, len(valid) + len(invalid))
    assert str(error) == (
        "intl: 2 of 3 mobile numbers are invalid: '+44 20 7946 0958' is not a valid mobile number for "
        "United Kingdom (GB): it is a fixed-line number, which cannot receive SMS; '+65 6123 4567' is not a "
        "valid mobile number for Singapore (SG): it is a fixed-line number, which cannot receive SMS; "
        "nothing was sent"
    )
    assert error.invalid == ["+44 20 7946 0958", "+65 6123 4567"]


def test_domestic_errors_keep_their_plain_list() -> None:
    _, invalid = normalize_mobiles(["13800138000", "12345", "bad"], international=False)
    assert str(SmsInvalidNumbersError("paasw_v2", invalid, 3)) == (
        "paasw_v2: 2 of 3 mobile numbers are invalid: '12345', 'bad'; nothing was sent"
    )


def test_an_invalid_number_survives_pickling_with_its_reason() -> None:
    number = InvalidNumber("+44 20 7946 0958", "is a fixed line")
    copy = pickle.loads(pickle.dumps(number))
    assert (type(copy), copy, copy.reason) == (InvalidNumber, "+44 20 7946 0958", "is a fixed line")
    assert json.dumps([number]) == '["+44 20 7946 0958"]'


def test_spellings_of_one_number_are_one_recipient() -> None:
    valid, invalid = normalize_mobiles(
        ["+44 7400 123456", "447400123456", "0044 (0)7400 123456", "+86 138 0013 8000", "8613800138000"],
        international=True,
    )
    assert (valid, invalid) == (["447400123456", "8613800138000"], [])


def test_a_mixed_list_keeps_its_order_and_reports_every_invalid_number() -> None:
    numbers = ["8613800138000", "+44 20 7946 0958", "4915123456789", "13800138000", "8613900139000"]
    valid, invalid = normalize_mobiles(numbers, international=True)
    assert valid == ["8613800138000", "4915123456789", "8613900139000"]
    assert invalid == ["+44 20 7946 0958", "13800138000"]
    assert all(isinstance(number, InvalidNumber) for number in invalid)


# ------------------------------------------------------------------ through the hook: refused before sending


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> IntlSmsHook:
    conn = {
        "conn_type": "sms_intl",
        "host": "http://gw.test:9118",
        "login": "10002",
        "password": "abc123",
        "extra": {"retry_wait": 0.01, "sign": "Acme"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SMS_INTL_NUMBERS", json.dumps(conn))
    return IntlSmsHook("sms_intl_numbers", retry_wait=0.01)


def test_the_hook_refuses_a_fixed_line_before_any_request(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.post(SEND_URL, json={"code": 0, "msg": "ok", "data": {"msgId": "1"}})
    with pytest.raises(SmsInvalidNumbersError, match=r"'\+44 20 7946 0958' is not a valid mobile number for United"):
        hook.send([f"86138{i:08d}" for i in range(1500)] + ["+44 20 7946 0958"], "hello")
    assert requests_mock.call_count == 0


def test_the_hook_sends_the_e164_digits(hook: IntlSmsHook, requests_mock: Any) -> None:
    requests_mock.post(SEND_URL, json={"code": 0, "msg": "ok", "data": {"msgId": "1"}})
    (receipt,) = hook.send(["+44 (0)7400 123456", "+1 415 555 0100", "+86 138 0013 8000"], "hello")
    assert requests_mock.last_request.json()["mobile"] == "447400123456,14155550100,8613800138000"
    assert receipt.mobiles == ("447400123456", "14155550100", "8613800138000")


# ------------------------------------------------------------------ phonenumbers only when needed


def _modules_after(code: str) -> dict[str, bool]:
    """Which of phonenumbers and the hooks a fresh interpreter has loaded after running ``code``."""
    probe = (
        f"{code}\nimport json, sys\n"
        "print(json.dumps({m: m in sys.modules for m in ('phonenumbers', 'airflow_provider_sms.hooks.base')}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_provider_and_its_hooks_does_not_import_phonenumbers() -> None:
    loaded = _modules_after(
        "import airflow_provider_sms, airflow_provider_sms.operators, airflow_provider_sms.sensors\n"
        "import airflow_provider_sms.hooks, airflow_provider_sms.hooks.intl, airflow_provider_sms.numbers\n"
        "import airflow_provider_sms.sending, airflow_provider_sms.notifications, airflow_provider_sms.plugins"
    )
    assert loaded == {"phonenumbers": False, "airflow_provider_sms.hooks.base": True}


def test_mainland_mobiles_never_load_phonenumbers() -> None:
    loaded = _modules_after(
        "from airflow_provider_sms.numbers import normalize_mobiles\n"
        "numbers = [f'86138{i:08d}' for i in range(50_000)]\n"
        "assert normalize_mobiles(numbers, international=True) == (numbers, [])\n"  # the one-scan path
        "assert normalize_mobiles(['+86 138 0013 8000', '0086 139 0013 9000'], international=True)[1] == []\n"
        "assert normalize_mobiles(['138 0013 8000', '13900139000'], international=False)[1] == []"
    )
    assert loaded["phonenumbers"] is False


def test_the_simulator_is_an_implementation_of_its_own() -> None:
    loaded = _modules_after(
        "from airflow_provider_sms.simulator import GatewaySimulator\nimport airflow_provider_sms.simulator.intl"
    )
    assert loaded == {"phonenumbers": False, "airflow_provider_sms.hooks.base": False}


def test_the_first_international_number_loads_phonenumbers() -> None:
    loaded = _modules_after(
        "from airflow_provider_sms.numbers import international_mobile\n"
        "assert international_mobile('+44 7400 123456') == '447400123456'"
    )
    assert loaded["phonenumbers"] is True
