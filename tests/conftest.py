"""Test session settings: a throwaway AIRFLOW_HOME, no example DAGs, no metadata database needed.

The ``sms_simulator`` and ``sms_connections`` fixtures come from ``airflow_provider_sms.testing``
(registered as a pytest plugin by the package's entry point).
"""

from __future__ import annotations

import os
import tempfile

_home = tempfile.mkdtemp(prefix="sms-airflow-home-")
os.environ.setdefault("AIRFLOW_HOME", _home)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
