"""SQL names the provider builds statements from: checked once, where the author gives them.

Table names and prefixes cannot be bound as parameters, so they are refused unless they are plain
identifiers that every supported database takes unquoted: letters, digits and underscores, not a
reserved word, not SQLite's own ``sqlite_`` namespace, within PostgreSQL's 63 characters. Operators
check them when they are built (DAG parse time), not first at execute.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from airflow_provider_sms.errors import SmsConfigurationError

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PREFIX: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")
MAX_NAME_CHARS: Final = 63  # PostgreSQL cuts longer names silently
#: words SQLite or PostgreSQL reserve (a table called ``order`` breaks an unquoted statement)
RESERVED: Final = frozenset(
    [
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "asymmetric",
        "authorization",
        "between",
        "binary",
        "both",
        "case",
        "cast",
        "check",
        "collate",
        "column",
        "constraint",
        "create",
        "cross",
        "current_catalog",
        "current_date",
        "current_role",
        "current_schema",
        "current_time",
        "current_timestamp",
        "current_user",
        "default",
        "deferrable",
        "delete",
        "desc",
        "distinct",
        "do",
        "drop",
        "else",
        "end",
        "except",
        "exists",
        "false",
        "fetch",
        "for",
        "foreign",
        "freeze",
        "from",
        "full",
        "grant",
        "group",
        "having",
        "ilike",
        "in",
        "index",
        "initially",
        "inner",
        "insert",
        "intersect",
        "into",
        "is",
        "isnull",
        "join",
        "lateral",
        "leading",
        "left",
        "like",
        "limit",
        "localtime",
        "localtimestamp",
        "natural",
        "not",
        "notnull",
        "null",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "outer",
        "overlaps",
        "placing",
        "primary",
        "references",
        "returning",
        "right",
        "select",
        "session_user",
        "similar",
        "some",
        "symmetric",
        "table",
        "tablesample",
        "then",
        "to",
        "trailing",
        "true",
        "union",
        "unique",
        "update",
        "user",
        "using",
        "values",
        "variadic",
        "verbose",
        "when",
        "where",
        "window",
        "with",
    ]
)


def check_name(name: object, what: str) -> str:
    """A table, column or key name: a plain identifier every supported database takes unquoted."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SmsConfigurationError(
            f"{what} {name!r} must be letters, digits and underscores, not starting with a digit"
        )
    if len(name) > MAX_NAME_CHARS:
        raise SmsConfigurationError(f"{what} {name!r} is longer than {MAX_NAME_CHARS} characters")
    if name.lower() in RESERVED:
        raise SmsConfigurationError(f"{what} {name!r} is an SQL reserved word; choose another name")
    if name.lower().startswith("sqlite_"):
        raise SmsConfigurationError(f"{what} {name!r} is in SQLite's reserved sqlite_ namespace")
    return name


def check_table(table: object, what: str = "target_table") -> str:
    """A table name, optionally schema-qualified (``schema.table``)."""
    if not isinstance(table, str):
        raise SmsConfigurationError(f"{what} must be a str, got {type(table).__name__}")
    parts = table.split(".")
    if len(parts) > 2:
        raise SmsConfigurationError(f"{what} {table!r} may name a schema and a table, no more")
    for part in parts:
        check_name(part, what)
    return table


def check_columns(columns: Sequence[str], key: Sequence[str]) -> None:
    """Column and key names of an upsert: plain identifiers, no repeats, the key among the columns."""
    for column in columns:
        check_name(column, "column")
    if len(set(columns)) != len(columns):
        raise SmsConfigurationError(f"columns {list(columns)} repeat a name")
    missing = [k for k in key if k not in columns]
    if not key or missing:
        raise SmsConfigurationError(f"key {list(key)} must be one or more of the columns {list(columns)}")


def check_table_prefix(prefix: object) -> str:
    """The store's table prefix: up to 41 identifier characters, so every table name stays within limits."""
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise SmsConfigurationError(
            f"SMS store table_prefix {prefix!r} must be letters, digits and underscores "
            "(up to 41), not starting with a digit"
        )
    if prefix.lower().startswith("sqlite_"):
        raise SmsConfigurationError(f"SMS store table_prefix {prefix!r} is in SQLite's reserved sqlite_ namespace")
    return prefix


def is_template(value: object) -> bool:
    """A Jinja template still to be rendered: checked after rendering, at execute."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


__all__ = [
    "MAX_NAME_CHARS",
    "RESERVED",
    "check_columns",
    "check_name",
    "check_table",
    "check_table_prefix",
    "is_template",
]
