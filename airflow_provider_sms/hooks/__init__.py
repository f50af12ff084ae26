"""The five vendor hooks (``provider_info.VENDORS``), importable from here; each module is imported only when its
hook is used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_sms.hooks.account_md5 import AccountMd5Hook
    from airflow_provider_sms.hooks.base import SmsHook
    from airflow_provider_sms.hooks.cloud_mas import CloudMasHook
    from airflow_provider_sms.hooks.intl import IntlSmsHook
    from airflow_provider_sms.hooks.paasw_v1 import PaaswV1Hook
    from airflow_provider_sms.hooks.paasw_v2 import PaaswV2Hook

from airflow_provider_sms.provider_info import VENDORS

#: hook class name -> its module, for the lazy imports below
_HOOKS = {"SmsHook": "base", **{vendor.hook_class: vendor.name for vendor in VENDORS.values()}}

#: Airflow connection type -> hook class name
HOOK_BY_CONN_TYPE = {vendor.conn_type: vendor.hook_class for vendor in VENDORS.values()}

__all__ = [
    "HOOK_BY_CONN_TYPE",
    "AccountMd5Hook",
    "CloudMasHook",
    "IntlSmsHook",
    "PaaswV1Hook",
    "PaaswV2Hook",
    "SmsHook",
    "get_sms_hook",
    "hook_class_for_conn_type",
]


def __getattr__(name: str) -> Any:
    if name in _HOOKS:
        return getattr(importlib.import_module(f"{__name__}.{_HOOKS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def hook_class_for_conn_type(conn_type: str) -> type[SmsHook]:
    """The hook class for an ``sms_*`` connection type, or a clear error naming the known types."""
    try:
        name = HOOK_BY_CONN_TYPE[conn_type]
    except KeyError:
        from airflow_provider_sms.errors import SmsConfigurationError

        raise SmsConfigurationError(
            f"connection type {conn_type!r} is not an SMS connection; expected one of {sorted(HOOK_BY_CONN_TYPE)}"
        ) from None
    hook_class: type[SmsHook] = __getattr__(name)
    return hook_class


def get_sms_hook(sms_conn_id: str, **hook_kwargs: Any) -> SmsHook:
    """The vendor hook for a connection, chosen by its connection type, so operators never branch on vendors."""
    from airflow_provider_sms.hooks.base import read_connection

    conn, extras = read_connection(sms_conn_id)
    hook = hook_class_for_conn_type(conn.conn_type or "")(sms_conn_id=sms_conn_id, **hook_kwargs)
    hook.use_connection(conn, extras)  # one lookup: the hook reads its settings from this one
    return hook
