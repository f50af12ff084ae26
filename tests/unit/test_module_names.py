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


PACKAGE = Path(__file__).resolve().parents[2] / "airflow_provider_sms"


def test_report_modes_and_feature_names_are_the_constants_not_bare_strings() -> None:
    """A typo in a bare ``"querry"`` would silently take the other branch; the constants cannot drift."""
    import re

    from airflow_provider_sms.features import QUERY, QUEUE
    from airflow_provider_sms.hooks import HOOK_BY_CONN_TYPE, hook_class_for_conn_type

    assert {hook_class_for_conn_type(t).report_mode for t in HOOK_BY_CONN_TYPE} == {QUEUE, QUERY}
    bare = re.compile(r"""(report_mode\s*[!=]=\s*["']|report_mode\s*=\s*["']|feature\s*=\s*["']|_hook_for\(["'])""")
    found = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if "simulator" not in path.parts  # the simulator is an independent implementation: it imports no hook code
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if bare.search(line)
    ]
    assert found == []


def test_the_feature_names_load_without_the_hooks() -> None:
    """The operators name features at DAG parse time; that must not import the hooks."""
    import subprocess
    import sys

    code = (
        "import sys; import airflow_provider_sms.features, airflow_provider_sms.operators.sync; "
        "print(sorted(m for m in sys.modules if m.startswith('airflow_provider_sms.hooks')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"  # after any warning Airflow prints on import
