"""Idempotent upserts into a user's warehouse table through any ``common.sql`` connection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_sms.errors import SmsConfigurationError
from airflow_provider_sms.identifiers import check_columns, check_table


def _db_hook(conn_id: str) -> Any:
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import BaseHook

    hook = BaseHook.get_hook(conn_id)
    if not isinstance(hook, DbApiHook):
        raise SmsConfigurationError(
            f"connection {conn_id!r} is not a SQL database connection (common.sql DbApiHook); got {type(hook).__name__}"
        )
    return hook


def upsert_rows(
    conn_id: str, table: str, columns: Sequence[str], key: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> int:
    """Create ``table`` if missing (text columns, primary key ``key``), then insert-or-replace ``rows``.

    Re-running with the same rows leaves the table as it was, so a retried sync adds no row.
    """
    check_table(table)
    check_columns(columns, key)
    if not rows:
        return 0
    hook = _db_hook(conn_id)
    column_sql = ", ".join(f"{c} TEXT" + (" NOT NULL" if c in key else "") for c in columns)
    hook.run(f"CREATE TABLE IF NOT EXISTS {table} ({column_sql}, PRIMARY KEY ({', '.join(key)}))")
    text_rows = [tuple(None if v is None else str(v) for v in row) for row in rows]
    hook.insert_rows(
        table,
        text_rows,
        target_fields=list(columns),
        replace=True,
        replace_index=list(key),
        executemany=True,
        commit_every=5000,
    )
    return len(rows)
