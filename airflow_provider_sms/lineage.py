"""OpenLineage datasets for the operators: the vendor's API, the message store's tables, a warehouse table.

Only used from ``get_openlineage_facets_on_complete``, which Airflow's OpenLineage listener calls when
``apache-airflow-providers-openlineage`` is installed (the ``openlineage`` extra); nothing here is
imported when a DAG file is parsed, and without the provider the operators report no lineage.

Naming follows OpenLineage's conventions where they exist:

* a vendor API: namespace ``sms://<host>[:<port>]`` of the connection's base URL, name
  ``<account>/<endpoint>``, the account being the connection's login (App ID, account, apId: an
  identifier the vendor shows, never the password) or, without one, the connection id;
* a table on a SQL connection: namespace and database from the hook's own
  ``get_openlineage_database_info`` as ``common.sql`` operators report them (``postgres://host:5432``),
  else ``<conn type>://<host>[:<port>]``; name ``[database.]schema.table`` where those are known;
* the embedded SQLite store: namespace ``sqlite://<file path>``, name the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow.providers.common.compat.openlineage.facet import Dataset

    from airflow_provider_sms.hooks.base import SmsHook


@dataclass(frozen=True)
class VendorEndpoint:
    """What a task learned of the vendor while it ran, kept for the lineage asked for after it."""

    host: str
    account: str
    endpoint: str

    @classmethod
    def of(cls, hook: SmsHook, endpoint: str) -> VendorEndpoint:
        """The endpoint of ``hook``'s connection; credentials in the URL, if any, are left out."""
        config = hook.config
        parts = urlsplit(config.base_url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return cls(host=host, account=config.login or hook.sms_conn_id, endpoint=endpoint)

    def dataset(self) -> Dataset:
        from airflow.providers.common.compat.openlineage.facet import Dataset

        return Dataset(namespace=f"sms://{self.host}", name=f"{self.account}/{self.endpoint}")


def sql_datasets(conn_id: str, tables: Sequence[str], columns: Sequence[str] = ()) -> list[Dataset]:
    """Datasets for tables on a ``common.sql`` connection, named as its hook names them for OpenLineage."""
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.sdk import BaseHook

    hook: Any = BaseHook.get_hook(conn_id)
    conn = hook.get_connection(conn_id)
    info = None
    get_info = getattr(hook, "get_openlineage_database_info", None)
    if get_info is not None:
        info = get_info(conn)
    if info is not None:
        from airflow.providers.openlineage.sqlparser import SQLParser

        namespace = SQLParser.create_namespace(info)
        database = info.database
    else:
        namespace = f"{conn.conn_type}://{conn.host or ''}" + (f":{conn.port}" if conn.port else "")
        database = None
    default_schema = _default_schema(hook) if database else None
    facets = _schema_facets(columns)
    return [
        Dataset(namespace=namespace, name=_qualified(table, database, default_schema), facets=facets)
        for table in tables
    ]


def sqlite_file_datasets(path: str, tables: Sequence[str]) -> list[Dataset]:
    """Datasets for tables in an SQLite file that no connection names (the store's default)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    return [Dataset(namespace=f"sqlite://{path}", name=table) for table in tables]


def store_datasets(store_conn_id: str | None, table_prefix: str, tables: Sequence[str]) -> list[Dataset]:
    """The message store's tables, where ``SmsStore`` keeps them for these arguments."""
    from airflow_provider_sms.store import SmsStore

    names = [f"{table_prefix}{t}" for t in tables]
    if store_conn_id:
        return sql_datasets(store_conn_id, names)
    path = SmsStore(None, table_prefix=table_prefix).path  # opens nothing: the file it would use
    return sqlite_file_datasets(str(path), names)


def _default_schema(hook: Any) -> str | None:
    """The schema unqualified names land in (PostgreSQL asks the server); None where the hook cannot say."""
    try:
        return hook.get_openlineage_default_schema()
    except Exception:  # a server that cannot be asked after the task: the name stays unqualified
        return None


def _qualified(table: str, database: str | None, default_schema: str | None) -> str:
    parts = table.split(".")
    if len(parts) == 1 and default_schema:
        parts = [default_schema, *parts]
    if database and len(parts) == 2:
        parts = [database, *parts]
    return ".".join(parts)


def _schema_facets(columns: Sequence[str]) -> dict[str, Any]:
    """A schema facet for a table whose columns the provider chose (the warehouse tables: all text)."""
    if not columns:
        return {}
    from airflow.providers.common.compat.openlineage.facet import SchemaDatasetFacet, SchemaDatasetFacetFields

    return {"schema": SchemaDatasetFacet(fields=[SchemaDatasetFacetFields(name=c, type="TEXT") for c in columns])}
