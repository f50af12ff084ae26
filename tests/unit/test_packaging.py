"""The Airflow version we claim (pyproject) is the one CI installs for its minimum-version run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ci_tests_the_minimum_airflow_pyproject_declares() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    declared = re.search(r'"apache-airflow>=([0-9.]+)"', pyproject)
    tested = re.search(r"^AIRFLOW_MIN=([0-9.]+)$", (ROOT / ".ci" / "run").read_text(encoding="utf-8"), re.M)
    assert declared and tested
    assert declared.group(1) == tested.group(1)
    # 3.2.0 is the first Airflow that reads conn-fields (the connection forms); below it the forms vanish
    assert tuple(int(p) for p in declared.group(1).split(".")) >= (3, 2, 0)
