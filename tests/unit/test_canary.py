"""The canary's verdict: decided as soon as more reports cannot change it, pending counted as not delivered
at the timeout."""

from __future__ import annotations

import pytest

from airflow_provider_sms.canary import CanaryVerdict


@pytest.mark.parametrize(
    ("delivered", "failed", "timed_out", "passed"),
    [
        (90, 0, False, True),  # 90 of 100 delivered: passed, whatever the 10 pending do
        (89, 0, False, None),  # 89 delivered, 11 pending: could still reach 90
        (89, 11, False, False),  # 11 failed: at most 89 of 100 can be delivered
        (80, 5, False, None),
        (80, 5, True, False),  # the timeout: the 15 pending count as not delivered
        (0, 0, True, False),
    ],
)
def test_the_verdict_is_taken_when_more_reports_cannot_change_it(
    delivered: int, failed: int, timed_out: bool, passed: bool | None
) -> None:
    verdict = CanaryVerdict(numbers=100, delivered=delivered, failed=failed, min_delivered=0.9)
    verdict.decide(timed_out=timed_out)
    assert verdict.passed is passed
    assert verdict.timed_out is (timed_out and passed is False and delivered + failed < 100)


def test_the_verdict_in_words_and_in_the_summary() -> None:
    verdict = CanaryVerdict(numbers=200, delivered=170, failed=10, min_delivered=0.9, by_code={"DB:0141": 10})
    verdict.decide(timed_out=True)
    assert verdict.describe() == "170 of 200 numbers delivered (85.0%), 10 failed, 20 pending at the timeout"
    assert verdict.to_dict() == {
        "numbers": 200,
        "delivered": 170,
        "failed": 10,
        "pending": 20,
        "share": 0.85,
        "passed": False,
        "by_code": {"DB:0141": 10},
    }
