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
    with pytest.raises(ValueError, match="unknown_grace_period must not be negative"):
        SmsSendOperator(task_id="t", sms_conn_id="x", mobiles="1", content="hi", unknown_grace_period=-1)
    assert SendPolicy(unknown_grace_period=-5).unknown_grace_period == 0.0  # a direct caller's negative: none
