"""``SmsStore``: the one object callers hold; each kind of data's methods come from its own module."""

from __future__ import annotations

from types import TracebackType

from airflow_provider_sms.errors import SmsConfigurationError
from airflow_provider_sms.identifiers import check_table_prefix
from airflow_provider_sms.store.database import Database
from airflow_provider_sms.store.inbound import InboundMessages
from airflow_provider_sms.store.journal import ReplyJournal
from airflow_provider_sms.store.ledger import SendLedger
from airflow_provider_sms.store.positions import Positions
from airflow_provider_sms.store.reports import DeliveryReports
from airflow_provider_sms.store.schema import COLUMN_TYPES, ensure_schema


class SmsStore(SendLedger, DeliveryReports, InboundMessages, ReplyJournal, Positions):
    """Sends, delivery reports, inbound messages, balances and opt-outs in SQL tables.

    :param store_conn_id: an Airflow connection whose hook is a ``common.sql`` ``DbApiHook`` for
        SQLite or PostgreSQL. None: an embedded SQLite file at ``path``, by default
        ``$AIRFLOW_HOME/sms_store.db``.
    :param table_prefix: prepended to every table name, so several stores can share a database.
    :param path: the embedded SQLite file (only without ``store_conn_id``).

    Nothing connects until the first call; the tables are created (or upgraded) then.
    """

    def __init__(
        self, store_conn_id: str | None = None, *, table_prefix: str = "sms_", path: str | None = None
    ) -> None:
        check_table_prefix(table_prefix)
        if store_conn_id is not None and path is not None:
            raise SmsConfigurationError(
                f"SMS store: give either store_conn_id ({store_conn_id!r}) or path ({path!r}), not both"
            )
        self._db = Database(
            store_conn_id, table_prefix=table_prefix, path=path, setup=ensure_schema, array_types=COLUMN_TYPES
        )

    @property
    def database(self) -> Database:
        """The connection and its SQL helpers, e.g. to query the tables directly (``{p}`` is the prefix)."""
        return self._db

    @property
    def store_conn_id(self) -> str | None:
        return self._db.store_conn_id

    @property
    def table_prefix(self) -> str:
        return self._db.table_prefix

    @property
    def path(self) -> str | None:
        """The embedded SQLite file (None with ``store_conn_id``)."""
        return self._db.path

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"`` (connects if not yet connected)."""
        return self._db.dialect.name

    def close(self) -> None:
        """Close the database connection; the next call opens a new one."""
        self._db.close()

    def __enter__(self) -> SmsStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
