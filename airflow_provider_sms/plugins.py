"""The ``sms`` Airflow plugin: Airflow's API server serves the push receiver at ``/sms``.

Registered through the ``airflow.plugins`` entry point. Airflow loads plugins in many processes
(scheduler, workers, CLI), so this module imports nothing heavy: the receiver's FastAPI app is built
on its first request, and it resolves connections per request, so loading the plugin never needs a
connection to exist. Airflow mounts plugin apps without its own authentication; the receiver
authenticates every request itself.
"""

from __future__ import annotations

import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/sms"


class LazyReceiverApp:
    """An ASGI app that builds the receiver (``create_app()``) when the first request arrives."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    def _build(self) -> Any:
        with self._lock:
            if self._app is None:
                from airflow_provider_sms.receiver.app import create_app

                self._app = create_app()
            return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        app = self._app if self._app is not None else self._build()
        await app(scope, receive, send)


receiver_app = LazyReceiverApp()


class SmsPlugin(AirflowPlugin):
    """Serves ``/sms/callbacks/{conn_id}/reports`` and ``/sms/callbacks/{conn_id}/inbound``."""

    name = "sms"
    fastapi_apps = [{"app": receiver_app, "url_prefix": URL_PREFIX, "name": "SMS push receiver"}]  # noqa: RUF012
