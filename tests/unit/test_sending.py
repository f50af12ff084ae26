"""``SendPolicy``: the send settings the operator and the notifier hand to ``PlannedSend``, checked once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_sms.operators import SmsSendOperator
from airflow_provider_sms.sending import SendPolicy


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_concurrency": 0}, "max_concurrency must be a whole number of at least 1, got 0"),
        ({"max_concurrency": True}, "max_concurrency must be a whole number of at least 1, got True"),
        ({"on_unknown": "guess"}, "on_unknown must be one of"),
        ({"on_plan_change": "merge"}, "on_plan_change must be one of"),
    ],
)
def test_the_operator_refuses_a_bad_setting_at_parse_time(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SmsSendOperator(task_id="s", sms_conn_id="sms_x", mobiles="13800138000", content="hi", **settings)  # type: ignore[arg-type]


def test_the_operator_hands_its_settings_over_whole() -> None:
    op = SmsSendOperator(
        task_id="s",
        sms_conn_id="sms_x",
        mobiles="13800138000",
        content="hi",
        max_concurrency=4,
        on_unknown="resend",
        unknown_grace_period=timedelta(seconds=90),
        on_plan_change="new_plan",
        skip_opted_out=False,
    )
    assert op.policy == SendPolicy(4, "resend", 90.0, "new_plan", skip_opted_out=False)
    # read as the operator's attributes too, as before the policy held them
    read = (op.max_concurrency, op.on_unknown, op.unknown_grace_period, op.on_plan_change, op.skip_opted_out)
    assert read == (4, "resend", 90.0, "new_plan", False)
    with pytest.raises(ValueError, match="unknown_grace_period must not be negative"):
        SmsSendOperator(task_id="t", sms_conn_id="x", mobiles="1", content="hi", unknown_grace_period=-1)
    assert SendPolicy(unknown_grace_period=-5).unknown_grace_period == 0.0  # a direct caller's negative: none


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"canary": 0}, "canary must be a whole number of at least 1 .*got 0"),
        ({"canary": -5}, "canary must be a whole number of at least 1 .*got -5"),
        ({"canary": True}, "canary must be a whole number of at least 1 .*got True"),
        ({"canary": 10.5}, "canary must be a whole number of at least 1 .*got 10.5"),
        ({"canary": "1000"}, "canary must be a whole number of at least 1 .*got '1000'"),
        ({"canary": 10, "canary_min_delivered": 0}, "canary_min_delivered must be a share above 0 and at most 1"),
        ({"canary": 10, "canary_min_delivered": 1.2}, "canary_min_delivered must be a share above 0 and at most 1"),
        ({"canary": 10, "canary_min_delivered": 90}, r"got 90\b"),
        ({"canary": 10, "canary_min_delivered": "0.9"}, "canary_min_delivered must be a share"),
        ({"canary": 10, "canary_timeout": 0}, "canary_timeout must be a positive number of seconds, got 0.0"),
        ({"canary": 10, "canary_timeout": timedelta(0)}, "canary_timeout must be a positive number of seconds"),
        ({"canary": 10, "canary_timeout": -1}, "canary_timeout must not be negative"),
        ({"canary": 10, "canary_timeout": float("inf")}, "canary_timeout must be a positive number of seconds"),
    ],
)
def test_the_operator_refuses_a_bad_canary_at_parse_time(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SmsSendOperator(task_id="s", sms_conn_id="sms_x", mobiles="13800138000", content="hi", **settings)  # type: ignore[arg-type]


def test_the_operator_hands_its_canary_settings_over() -> None:
    op = SmsSendOperator(
        task_id="s",
        sms_conn_id="sms_x",
        mobiles="13800138000",
        content="hi",
        canary=1000,
        canary_min_delivered=1,
        canary_timeout=timedelta(minutes=5),
    )
    assert (op.policy.canary, op.policy.canary_min_delivered, op.policy.canary_timeout) == (1000, 1.0, 300.0)
    plain = SmsSendOperator(task_id="t", sms_conn_id="sms_x", mobiles="13800138000", content="hi")
    assert (plain.policy.canary, plain.policy.canary_min_delivered, plain.policy.canary_timeout) == (None, 0.9, 3600.0)
    assert SendPolicy(canary=5, canary_timeout=30).canary_timeout == 30.0
