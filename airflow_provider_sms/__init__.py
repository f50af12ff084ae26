"""Apache Airflow provider for SMS gateways: five vendors, one interface, and a store that loses nothing."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's ProvidersManager; imports nothing heavy."""
    from airflow_provider_sms.provider_info import PROVIDER_INFO

    return PROVIDER_INFO
