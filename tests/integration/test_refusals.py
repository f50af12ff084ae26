"""Hostile send input is refused before anything goes out: the simulator, over real sockets, counts no
request at all (not even a token request). Through ``SmsSendOperator`` (stored plan), ``SmsHook.send``
and ``SmsNotifier``, on every vendor the input applies to."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sms.errors import SmsInvalidRequestError
from airflow_provider_sms.hooks import get_sms_hook
from airflow_provider_sms.hooks.base import SmsHook
from airflow_provider_sms.notifications import SmsNotifier
from airflow_provider_sms.operators import SmsSendOperator
from airflow_provider_sms.simulator import GatewaySimulator
from airflow_provider_sms.testing import task_context

pytestmark = pytest.mark.integration

VENDORS = ["account_md5", "cloud_mas", "intl", "paasw_v1", "paasw_v2"]
MOBILE = {"intl": "2348031000010"}
SIGNATURE = {"cloud_mas": None}  # cloud_mas takes its signature code from the connection
PAST = timedelta(minutes=5)


def mobile(vendor: str) -> str:
    return MOBILE.get(vendor, "13800138000")


def signature(vendor: str) -> str | None:
    return SIGNATURE.get(vendor, "S")


def requests_seen(sim: GatewaySimulator) -> dict[str, int]:
    return dict(sim.gateway.stats()["requests"])


#: (id, vendors, operator/hook arguments, error, message)
CASES: list[tuple[str, list[str], dict[str, Any], type[Exception], str]] = [
    ("empty-template-id", VENDORS, {"content": None, "template_id": ""}, SmsInvalidRequestError, "template_id is"),
    ("blank-content", VENDORS, {"content": " \n\t "}, SmsInvalidRequestError, "message content is empty"),
    (
        "invisible-content",
        VENDORS,
        {"content": "\u200b\u200c \u200d\u2060\ufeff"},
        SmsInvalidRequestError,
        "message content is empty",
    ),
    ("int-content", VENDORS, {"content": 123}, TypeError, "content must be a str, got int"),
    ("no-mobiles", VENDORS, {"mobiles": None}, TypeError, "mobiles must be a list of numbers"),
    ("past-schedule", ["intl", "paasw_v2"], {"scheduled_at": "past"}, SmsInvalidRequestError, "is in the past"),
    ("long-signature", ["paasw_v1"], {"signature": "签" * 21}, SmsInvalidRequestError, "at most 20"),
]
PARAMS = [
    pytest.param(vendor, args, error, message, id=f"{case}-{vendor}")
    for case, vendors, args, error, message in CASES
    for vendor in vendors
]


def arguments(vendor: str, args: dict[str, Any]) -> dict[str, Any]:
    given = {"mobiles": [mobile(vendor)], "content": "hello", "signature": signature(vendor), **args}
    if given.get("scheduled_at") == "past":
        given["scheduled_at"] = datetime.now(timezone.utc) - PAST
    return given


@pytest.mark.parametrize(("vendor", "args", "error", "message"), PARAMS)
def test_operator_refuses_before_any_request(
    sim: GatewaySimulator, home: Path, vendor: str, args: dict[str, Any], error: type[Exception], message: str
) -> None:
    op = SmsSendOperator(task_id="send", sms_conn_id=f"sms_{vendor}", **arguments(vendor, args))
    with pytest.raises(error, match=message):
        op.execute(task_context())
    assert requests_seen(sim) == {}


@pytest.mark.parametrize(("vendor", "args", "error", "message"), PARAMS)
def test_hook_send_refuses_before_any_request(
    sim: GatewaySimulator, vendor: str, args: dict[str, Any], error: type[Exception], message: str
) -> None:
    given = arguments(vendor, args)
    mobiles, content, template_id = given.pop("mobiles"), given.pop("content"), given.pop("template_id", None)
    options = {k: v for k, v in given.items() if v is not None}
    hook = get_sms_hook(f"sms_{vendor}")
    with pytest.raises(error, match=message):
        if template_id is not None:
            hook.send_template(mobiles, template_id, None, **options)
        else:
            hook.send(mobiles, content, **options)
    assert requests_seen(sim) == {}


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_valid_send_after_the_refusals_is_counted(sim: GatewaySimulator, vendor: str) -> None:
    """The zero counts above mean something: the same send with good input reaches the simulator."""
    options = {"signature": signature(vendor)} if signature(vendor) else {}
    (receipt,) = get_sms_hook(f"sms_{vendor}").send([mobile(vendor)], "\u200bhello", **options)
    assert receipt.mobiles == (mobile(vendor),)
    assert sum(sim.gateway.stats()["accepted_requests"].values()) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": "\u200b \ufeff"}, "message content is empty"),
        ({"text": "down", "signature": "S", "kind": None}, None),  # control: this one is sent
    ],
)
def test_notifier_refuses_invisible_text_before_any_request(
    sim: GatewaySimulator, kwargs: dict[str, Any], message: str | None
) -> None:
    note = SmsNotifier(sms_conn_id="sms_paasw_v2", mobiles=["13900000001"], raise_on_error=True, **kwargs)
    if message is None:
        note(task_context())
        assert requests_seen(sim).get("paasw_v2 /message/send") == 1
        return
    with pytest.raises(SmsInvalidRequestError, match=message):
        note(task_context())
    assert requests_seen(sim) == {}


def test_notifier_without_numbers_is_a_type_error_naming_them() -> None:
    with pytest.raises(TypeError, match="mobiles must be a list of numbers or a comma-separated string, got NoneType"):
        SmsNotifier(sms_conn_id="sms_paasw_v2", mobiles=None, text="down")  # type: ignore[arg-type]


def test_retry_of_a_stored_plan_is_not_refused_once_its_schedule_has_passed(
    sim: GatewaySimulator, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The schedule is checked when a plan is made: a retry that comes after the scheduled time finishes the
    plan its first try stored (as before) instead of stranding its unsent requests."""
    when = datetime.now(timezone.utc) + timedelta(minutes=10)
    op = SmsSendOperator(
        task_id="send",
        sms_conn_id="sms_paasw_v2",
        mobiles=[f"138{i:08d}" for i in range(1500)],
        content="hello",
        signature="S",
        scheduled_at=when,
    )
    real_submit = SmsHook.submit
    calls = {"n": 0}

    def crash_on_second(self: SmsHook, request: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed")
        return real_submit(self, request)

    monkeypatch.setattr(SmsHook, "submit", crash_on_second)
    with pytest.raises(RuntimeError):
        op.execute(task_context())
    monkeypatch.setattr(SmsHook, "submit", real_submit)
    monkeypatch.setattr(SmsHook, "now", lambda self: when + timedelta(minutes=5))  # the retry comes late
    with pytest.raises(SmsInvalidRequestError, match="in the past"):  # a new plan would be refused ...
        get_sms_hook("sms_paasw_v2").plan_send(["13800138000"], "hello", scheduled_at=when)
    summary = op.execute(task_context())  # ... the stored one is finished
    assert summary["skipped_requests"] == 1 and summary["sent_requests"] == 1
    assert summary["accepted_numbers"] == 1500
    assert sim.gateway.stats()["accepted_requests"] == {"paasw_v2": 2}
