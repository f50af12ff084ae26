"""Modules named for what they do; the one import path the README documented before a rename still works."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_the_old_sync_module_still_gives_replay_quarantined_with_a_warning() -> None:
    from airflow_provider_sms import pulling

    with pytest.warns(DeprecationWarning, match=r"import replay_quarantined from airflow_provider_sms\.pulling"):
        from airflow_provider_sms.sync import replay_quarantined
    assert replay_quarantined is pulling.replay_quarantined


def test_the_delivery_check_has_its_own_module() -> None:
    from airflow_provider_sms import delivery_check, sync

    with pytest.warns(DeprecationWarning, match="delivery_check"):
        assert sync.check_delivery is delivery_check.check_delivery
    assert not hasattr(__import__("airflow_provider_sms.pulling").pulling, "check_delivery")


def test_parse_mobiles_lives_with_the_numbers() -> None:
    from airflow_provider_sms import numbers
    from airflow_provider_sms.notifications import sms
    from airflow_provider_sms.sensors import delivery

    assert "parse_mobiles" in vars(numbers)
    # the notifier and the sensor no longer reach into the send operator's module for it
    for module in (sms, delivery):
        assert "operators.send" not in Path(str(module.__file__)).read_text(encoding="utf-8")
