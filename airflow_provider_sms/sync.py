"""Deprecated: this module became ``airflow_provider_sms.pulling`` (pulls into the store, the quarantine and its
replay) and ``airflow_provider_sms.delivery_check`` (the delivery sensor's check).

Kept because the README documented ``from airflow_provider_sms.sync import replay_quarantined``; every name
is looked up in its new home, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED_TO = {"DeliveryCheck": "delivery_check", "check_delivery": "delivery_check"}


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    module = _MOVED_TO.get(name, "pulling")
    warnings.warn(
        f"airflow_provider_sms.sync is deprecated; import {name} from airflow_provider_sms.{module}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(f"airflow_provider_sms.{module}"), name)
