"""Unit tests start with this process's token cache and paced-call slots empty, and leave them so."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_sms.hooks.base import PROCESS_SLOTS, TOKEN_CACHE


@pytest.fixture(autouse=True)
def _fresh_process_caches() -> Iterator[None]:
    TOKEN_CACHE.clear()
    PROCESS_SLOTS.clear()
    yield
    TOKEN_CACHE.clear()
    PROCESS_SLOTS.clear()
