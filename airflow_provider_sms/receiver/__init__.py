"""The push receiver: vendors POST delivery reports and inbound messages here, and they go into the store.

Served by Airflow's API server under ``/sms`` (the ``sms`` plugin, ``airflow_provider_sms.plugins``),
or on its own with ``python -m airflow_provider_sms.receiver``; the URLs are the same either way:
``/sms/callbacks/{conn_id}/reports`` and ``/sms/callbacks/{conn_id}/inbound``. See ``app.py`` for
the checks every request goes through and ``push.py`` for the vendors' formats and answers.

Nothing here is imported until used, so importing the package (or the plugin) does not load FastAPI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_sms.receiver.app import ReceiverSettings, create_app, create_standalone_app

_LAZY = {"ReceiverSettings": "app", "create_app": "app", "create_standalone_app": "app"}

__all__ = ["ReceiverSettings", "create_app", "create_standalone_app"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
