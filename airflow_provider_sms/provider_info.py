"""The provider metadata Airflow reads: connection types and their declarative form fields.

Airflow 3.2+ builds the connection form from ``conn-fields`` and ``ui-field-behaviour`` here,
without importing any hook, so this module is plain data.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_sms import __version__

_STRING = {"type": ["string", "null"]}
_SECRET = {"type": ["string", "null"], "format": "password"}

_COMMON_FIELDS: dict[str, Any] = {
    "timezone": {
        "label": "Vendor time zone",
        "description": "Zone of the vendor's naive timestamps (IANA name).",
        "schema": {"type": ["string", "null"], "default": "Asia/Shanghai"},
    },
    "timeout": {
        "label": "Read timeout (s)",
        "description": "Seconds to wait for a reply before giving up.",
        "schema": {"type": ["number", "string", "null"], "default": 30},
    },
}


def _field(label: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": dict(schema or _STRING)}


_CALLBACK_FIELDS: dict[str, Any] = {
    "callback_secret": _field(
        "Push secret",
        "Enables the push receiver: the vendor calls /sms/callbacks/<conn_id>/reports?secret=<this> (and /inbound). "
        "Use 32+ random characters; fewer than 16 leave push disabled.",
        _SECRET,
    ),
    "callback_allow_ips": _field("Push allowed IPs", "Comma list of IPs/CIDRs allowed to push; empty: any address"),
    "callback_store_conn_id": _field(
        "Push store connection",
        "SQLite/PostgreSQL connection of the SMS store pushes go to (default: [sms] callback_store_conn_id, "
        "else the embedded store); use the sending tasks' store",
    ),
    "callback_store_table_prefix": _field("Push store table prefix", "Table prefix of that store (default sms_)"),
}
_INTL_CALLBACK_FIELDS: dict[str, Any] = {
    **_CALLBACK_FIELDS,
    "callback_secret": _field(
        "Push secret (optional)",
        "intl pushes are authenticated by their appKey/appSecret headers; "
        "if set, the push URL must also carry ?secret=<this>",
        _SECRET,
    ),
}


def _connection_type(
    conn_type: str,
    class_name: str,
    module: str,
    hook_name: str,
    *,
    hidden: list[str],
    relabeling: dict[str, str],
    placeholders: dict[str, str],
    fields: dict[str, Any],
) -> dict[str, Any]:
    return {
        "connection-type": conn_type,
        "hook-class-name": f"airflow_provider_sms.hooks.{module}.{class_name}",
        "hook-name": hook_name,
        "ui-field-behaviour": {"hidden-fields": hidden, "relabeling": relabeling, "placeholders": placeholders},
        "conn-fields": {**fields, **_COMMON_FIELDS},
    }


CONNECTION_TYPES: list[dict[str, Any]] = [
    _connection_type(
        "sms_paasw_v2",
        "PaaswV2Hook",
        "paasw_v2",
        "SMS: PaaSW gateway v2",
        hidden=["schema", "port"],
        relabeling={"login": "App ID", "password": "Secret", "host": "Base URL"},
        placeholders={"host": "http://openapi.gateway.paasw.com", "login": "0189457543"},
        fields={
            **_CALLBACK_FIELDS,
            "format": _field(
                "Body format",
                "json (/message/*) or form (/msg/*)",
                {"type": ["string", "null"], "enum": ["json", "form", None], "default": "json"},
            ),
            "product_id": _field(
                "Product ID",
                "1 verification, 2 notification, 3 marketing",
                {"type": ["string", "null"], "default": "2"},
            ),
            "sign": _field("Signature", "Put in 【】 at the start of the content when it has none"),
        },
    ),
    _connection_type(
        "sms_paasw_v1",
        "PaaswV1Hook",
        "paasw_v1",
        "SMS: PaaSW gateway v1",
        hidden=["schema", "port"],
        relabeling={"login": "App ID", "password": "Secret", "host": "Base URL"},
        placeholders={"host": "http://openapi.gateway.paasw.com", "login": "0189457543"},
        fields={
            **_CALLBACK_FIELDS,
            "sign": _field("Signature", "Sent in the sign field, without 【】 (at most 20 characters)"),
            "kind": _field("Message kind", "1, 2 or 3; only for accounts configured with several kinds"),
        },
    ),
    _connection_type(
        "sms_intl",
        "IntlSmsHook",
        "intl",
        "SMS: international (appKey)",
        hidden=["schema", "port"],
        relabeling={"login": "App key", "password": "App secret", "host": "Base URL"},
        placeholders={"host": "http://39.107.123.194:9118", "login": "10002"},
        fields={
            **_INTL_CALLBACK_FIELDS,
            "sender_id": _field("Sender ID", "Shown as the sender on the phone, where the route allows it"),
            "sign": _field("Signature", "Put in 【】 at the start of the content when it has none"),
        },
    ),
    _connection_type(
        "sms_account_md5",
        "AccountMd5Hook",
        "account_md5",
        "SMS: account + MD5 password",
        hidden=["schema", "port"],
        relabeling={"login": "Account", "password": "Password", "host": "Base URL"},
        placeholders={"host": "https://sms.example.com"},
        fields={
            **_CALLBACK_FIELDS,
            "sign": _field("Signature", "Put in 【】 at the start of the content when it has none"),
            "pwd_case": _field(
                "MD5 case",
                "lower (default) or upper: case of the hex MD5 sent as pwd",
                {"type": ["string", "null"], "enum": ["lower", "upper", None], "default": "lower"},
            ),
        },
    ),
    _connection_type(
        "sms_cloud_mas",
        "CloudMasHook",
        "cloud_mas",
        "SMS: China Mobile Cloud MAS (HTTPS)",
        hidden=["schema"],
        relabeling={"login": "apId", "password": "secretKey", "host": "Base URL"},
        placeholders={"host": "https://mas.example.com:28888", "login": "apId"},
        fields={
            "ec_name": _field("Enterprise name (ecName)", "As registered with Cloud MAS"),
            "sign": _field("Signature code", "Signature code from Cloud MAS interface management"),
            "add_serial": _field("Extension code (addSerial)", "Empty for exact-match service codes"),
            "verify": _field(
                "Verify TLS",
                "false (the vendor's instruction), true, or a CA bundle path",
                {"type": ["string", "boolean", "null"], "default": "false"},
            ),
        },
    ),
]


PROVIDER_INFO: dict[str, Any] = {
    "package-name": "airflow-provider-sms",
    "name": "SMS",
    "description": "Send SMS through Chinese and international gateways and track every message.",
    "versions": [__version__],
    "connection-types": CONNECTION_TYPES,
    "notifications": ["airflow_provider_sms.notifications.sms.SmsNotifier"],
    "triggers": [
        {
            "integration-name": "SMS",
            "python-modules": ["airflow_provider_sms.triggers.delivery", "airflow_provider_sms.triggers.inbound"],
        }
    ],
}
