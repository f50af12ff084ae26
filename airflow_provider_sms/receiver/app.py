"""The push receiver: a FastAPI app that takes the delivery reports and inbound messages vendors push.

Routes, relative to where the app is mounted (``/sms`` both in Airflow and standalone)::

    POST /callbacks/{conn_id}/reports    delivery reports of the account behind ``conn_id``
    POST /callbacks/{conn_id}/inbound    inbound (MO) messages
    GET  /health                         200 while the process serves requests

Every request goes through the same steps, and each refusal touches nothing:

1. the connection is looked up per request (``BaseHook.get_connection``): unknown ids, connections
   that are not ``sms_*``, vendors without that push (the hook's ``push``: cloud_mas has none, intl
   pushes no inbound) and connections with push not enabled (no ``callback_secret``, unless the vendor
   authenticates itself, as intl does; or one shorter than 16 characters, which is
   logged once per connection) all answer 404, as an unknown path would;
2. the client address is checked against the optional ``callback_allow_ips`` extra (403);
3. the request is authenticated, before any byte of its body is read: by the vendor's own rule where it
   has one (intl: its ``appKey`` and ``appSecret`` headers, ``IntlPush.credentials_ok``), the others by
   the ``secret`` query parameter against the ``callback_secret`` extra (intl too, when it has one),
   compared in constant time (401);
4. the media type (415) and size (413, ``max_body_bytes``, 1 MiB by default) are checked, the body is
   read within ``read_timeout`` (408, 10 s by default), decoded (400: not JSON, nested more than 32
   levels, a ``count`` that disagrees with the records) and each record is parsed by the vendor
   hook's own ``report_from_record`` / ``inbound_from_record`` (a record that will not parse is
   quarantined, the others stored);
5. the records are committed to the store, and only then does the vendor get its success answer.
   A store failure gets the vendor's "push again" answer (see ``push.py``).

Which store: the connection's ``callback_store_conn_id`` extra, else the app's ``store_conn_id``
(``[sms] callback_store_conn_id`` in the Airflow config, or ``--store-conn-id``), else the embedded
SQLite file ``$AIRFLOW_HOME/sms_store.db`` that the operators use by default. Point it at the store
the sending tasks write to: that is where masked numbers are matched to sent ones and batch counters
are kept.

Secrets never reach a log line: before anything else sees the request, the ``secret`` query value
is taken out of it and the query string keeps ``secret=***`` (as do credential-looking names in any
case), and once the connection is read its secret is replaced in every form (raw, percent-encoded,
any parameter name, the path) in the request the access logs (uvicorn's, or the one Airflow's API
server writes) print; the receiver's own lines name the path only, and the
``callback_secret`` extra is registered with Airflow's secrets masker when the connection is read.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypedDict
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from airflow_provider_sms import metrics, redaction
from airflow_provider_sms.hooks.push import KINDS, Answer, PushRejected, VendorPush, same_secret
from airflow_provider_sms.receiver.push import check_media_type, push_format, push_items
from airflow_provider_sms.redaction import REDACTED, SENSITIVE_PARAM

if TYPE_CHECKING:
    from airflow.sdk import Connection
    from typing_extensions import Unpack

    from airflow_provider_sms.hooks.base import SmsHook
    from airflow_provider_sms.pulling import StoredPage
    from airflow_provider_sms.store import SmsStore

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024
#: seconds an authenticated request's whole body may take to arrive (a stalled body holds a connection)
DEFAULT_READ_TIMEOUT: Final = 10.0
#: the shortest ``callback_secret`` that enables push: a shorter one could be guessed
MIN_CALLBACK_SECRET_CHARS: Final = 16
DEFAULT_TABLE_PREFIX: Final = "sms_"
#: the query parameter that carries the connection's ``callback_secret``
SECRET_PARAM: Final = "secret"
#: where ``_HideSecret`` leaves the secret in the ASGI scope (a list: the parameter may be repeated)
_SECRET_SCOPE_KEY: Final = "airflow_provider_sms.callback_secret"
#: the Airflow config section (env ``AIRFLOW__SMS__CALLBACK_...``) the receiver reads its defaults from
CONFIG_SECTION: Final = "sms"
#: connection extras the receiver reads
SECRET_EXTRA: Final = "callback_secret"
ALLOW_IPS_EXTRA: Final = "callback_allow_ips"
STORE_EXTRA: Final = "callback_store_conn_id"
STORE_PREFIX_EXTRA: Final = "callback_store_table_prefix"

DEFAULT_CONNECTION_CACHE_SECONDS: Final = 5.0
#: how often a receiver process looks for pages a crash left journaled, and how old they must be: pages
#: of pushes in flight beside it are being stored by their own request (a pull stores them too)
SWEEP_EVERY: Final = 30.0
LEFTOVER_AGE: Final = 60.0
_CONN_ID = re.compile(r"[A-Za-z0-9_.\-]{1,250}")
_NOT_FOUND: Final = Answer(404, {"detail": "Not Found"})

#: a looked-up connection: itself, its extras, and its vendor's push format (None: no push)
Found: TypeAlias = tuple["Connection", Mapping[str, Any], VendorPush | None]


@dataclass(frozen=True)
class ReceiverSettings:
    """App-wide defaults; a connection's ``callback_store_*`` extras override the store ones."""

    store_conn_id: str | None = None
    store_table_prefix: str = DEFAULT_TABLE_PREFIX
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    read_timeout: float = DEFAULT_READ_TIMEOUT
    #: how long a looked-up connection is reused: a changed secret or allow-list applies after this
    connection_cache_seconds: float = DEFAULT_CONNECTION_CACHE_SECONDS

    def __post_init__(self) -> None:
        if self.max_body_bytes <= 0:
            raise ValueError(f"max_body_bytes must be positive, got {self.max_body_bytes}")
        if not self.read_timeout > 0:
            raise ValueError(f"read_timeout must be positive, got {self.read_timeout}")
        if not self.connection_cache_seconds >= 0:
            raise ValueError(f"connection_cache_seconds must not be negative, got {self.connection_cache_seconds}")
        from airflow_provider_sms.identifiers import check_table_prefix

        check_table_prefix(self.store_table_prefix)  # when the receiver starts, not at the first push

    @classmethod
    def from_config(cls) -> ReceiverSettings:
        """``[sms] callback_store_conn_id``, ``callback_store_table_prefix``, ``callback_max_body_bytes``,
        ``callback_read_timeout``."""
        try:
            from airflow.sdk.configuration import conf
        except ImportError:  # pragma: no cover - Airflow 3 always has it
            return cls()

        def get(key: str) -> str | None:
            value = conf.get(CONFIG_SECTION, key, fallback=None)
            return str(value).strip() or None if value is not None else None

        size = get("callback_max_body_bytes")
        timeout = get("callback_read_timeout")
        cache = get("callback_connection_cache_seconds")
        return cls(
            store_conn_id=get("callback_store_conn_id"),
            store_table_prefix=get("callback_store_table_prefix") or DEFAULT_TABLE_PREFIX,
            max_body_bytes=int(size) if size else DEFAULT_MAX_BODY_BYTES,
            read_timeout=float(timeout) if timeout else DEFAULT_READ_TIMEOUT,
            connection_cache_seconds=float(cache) if cache else DEFAULT_CONNECTION_CACHE_SECONDS,
        )


class _Stores:
    """One ``SmsStore`` per (store connection, table prefix, embedded file), opened on first use and kept.

    A store whose write failed is closed and dropped, so a broken database connection is opened anew
    by the next push instead of failing every push after it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stores: dict[tuple[str | None, str, str | None], SmsStore] = {}
        self._swept: dict[tuple[str | None, str, str | None, str, str], float] = {}
        self._groups: dict[tuple[str | None, str, str | None, str, str], _GroupCommit] = {}

    def group(self, store: SmsStore, conn_id: str, kind: str) -> _GroupCommit:
        """The group commit of pushes to ``store`` for one account and kind."""
        with self._lock:
            return self._groups.setdefault(_account_key(store, conn_id, kind), _GroupCommit())

    def sweep_due(self, store: SmsStore, conn_id: str, kind: str) -> bool:
        """Whether this process should look for pages a crash left in ``store``'s journal now: once per
        ``SWEEP_EVERY`` seconds per account and kind, not on every push."""
        key, now = _account_key(store, conn_id, kind), time.monotonic()
        with self._lock:
            if now - self._swept.get(key, -SWEEP_EVERY) < SWEEP_EVERY:
                return False
            self._swept[key] = now
        return True

    def get(self, store_conn_id: str | None, table_prefix: str) -> SmsStore:
        if store_conn_id is not None:  # no embedded file whose path the environment picks: found by its key
            with self._lock:
                found = self._stores.get((store_conn_id, table_prefix, None))
            if found is not None:
                return found
        from airflow_provider_sms.store import SmsStore

        candidate = SmsStore(store_conn_id, table_prefix=table_prefix)  # connects on first use only
        key = (store_conn_id, table_prefix, candidate.path)
        with self._lock:
            return self._stores.setdefault(key, candidate)

    def discard(self, store: SmsStore) -> None:
        with self._lock:
            for key in [k for k, v in self._stores.items() if v is store]:
                del self._stores[key]
        _close_quietly(store)

    def close(self) -> None:
        with self._lock:
            stores, self._stores = list(self._stores.values()), {}
            self._swept.clear()
        for store in stores:
            _close_quietly(store)


@dataclass(eq=False)
class _Push:
    """One push waiting in a ``_GroupCommit``: its records, and what became of them."""

    items: list[Mapping[str, Any]]
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    stored: StoredPage | None = None
    error: BaseException | None = None


#: stores a group of pushes; its second argument moves more waiting pushes into the group (see _GroupCommit)
_Commit: TypeAlias = Callable[[list[_Push], Callable[[Callable[[_Push], bool]], None]], None]


class _GroupCommit:
    """Pushes of one account and kind that arrive together are stored in one commit, and each is
    answered only once it is done.

    A vendor pushes one record per request, thousands a second after a large send; a commit per push
    made the database the bottleneck. The first push to arrive leads: it commits everything waiting,
    then hands the lead to the next push still waiting, if any. Once its commit holds the store's
    write lock (which another process may have held), the leader may take along, through ``more``, the
    pushes that arrived while it waited: each turn at the lock then carries all that is waiting.
    """

    MAX_GROUP: Final = 500

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[_Push] = []
        self._busy = False

    def store(self, items: list[Mapping[str, Any]], commit: _Commit) -> StoredPage:
        push = _Push(items)
        with self._lock:
            self._waiting.append(push)
            push.lead = not self._busy
            self._busy = True
        if not push.lead:
            push.done.wait()
        if push.lead:  # from the start, or handed the lead by the push before it
            self._lead(commit)
        if push.error is not None:
            raise push.error
        assert push.stored is not None
        return push.stored

    def _lead(self, commit: _Commit) -> None:
        with self._lock:
            group, self._waiting = self._waiting[: self.MAX_GROUP], self._waiting[self.MAX_GROUP :]

        def more(accept: Callable[[_Push], bool]) -> None:
            """Move waiting pushes into the group, in order, while ``accept`` takes them (and there is room)."""
            with self._lock:
                while self._waiting and len(group) < self.MAX_GROUP and accept(self._waiting[0]):
                    group.append(self._waiting.pop(0))

        try:
            commit(group, more)
        except BaseException as exc:  # every push of the group is answered with the failure
            for push in group:
                push.error = push.error or exc
        with self._lock:
            following = self._waiting[0] if self._waiting else None
            if following is None:
                self._busy = False
            else:
                following.lead = True
        for push in group:
            push.done.set()
        if following is not None:
            following.done.set()


class _Connections:
    """Connections and their extras, each looked up at most once per ``ttl`` seconds.

    A vendor pushes a record per request, thousands a second after a large send: a connection lookup
    (metadata database or secrets backend) and an extras parse for each cost more than storing the
    record. Misses are not kept: a connection created a moment ago is found at once.
    """

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._found: dict[str, tuple[float, Found]] = {}
        self._hooks: dict[str, tuple[Connection, SmsHook]] = {}

    def hook(self, conn: Connection) -> SmsHook:
        """The vendor hook of a looked-up connection, made once per lookup: a new hook would look the
        connection up again to read its time zone."""
        from airflow_provider_sms.hooks import hook_class_for_conn_type

        with self._lock:
            made = self._hooks.get(conn.conn_id)
        if made is not None and made[0] is conn:
            return made[1]
        hook = hook_class_for_conn_type(conn.conn_type or "")(sms_conn_id=conn.conn_id)
        if self._ttl > 0:
            with self._lock:
                self._hooks[conn.conn_id] = (conn, hook)
        return hook

    def cached(self, conn_id: str) -> Found | None:
        with self._lock:
            hit = self._found.get(conn_id)
        if hit is None or time.monotonic() - hit[0] >= self._ttl:
            return None
        return hit[1]

    def look_up(self, conn_id: str) -> Found:
        """The connection, its extras and its vendor's push format (which imports the vendor's hook module:
        this runs in a worker thread, never on the event loop)."""
        conn, extras = _connection(conn_id)
        found = (conn, extras, push_format(conn.conn_type))
        if self._ttl > 0:
            with self._lock:
                self._found[conn_id] = (time.monotonic(), found)
        return found


def _account_key(store: SmsStore, conn_id: str, kind: str) -> tuple[str | None, str, str | None, str, str]:
    """One account's records of one kind in one store: what sweeps and group commits are kept per."""
    return (store.store_conn_id, store.table_prefix, store.path, conn_id, kind)


def _close_quietly(store: SmsStore) -> None:
    try:
        store.close()
    except Exception:  # a dead connection may fail to close; it is dropped either way
        log.debug("SMS receiver: closing a store failed", exc_info=True)


class _HideSecret:
    """ASGI middleware: moves the ``secret`` query value into the scope and leaves ``secret=***`` behind.

    Access logs read the query string from the same scope once the response is sent, so the secret
    never reaches them, whichever server (uvicorn alone, Airflow's API server) writes them. Any other
    parameter whose name looks like a credential (``Secret``, ``SECRET``, ``token``, ...) is redacted
    too; the connection's secret under any other name is removed by ``_scrub_secret`` once it is known.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        query = scope.get("query_string") or b"" if scope.get("type") == "http" else b""
        if query:
            pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            given = [value for name, value in pairs if name == SECRET_PARAM]
            if given:
                scope[_SECRET_SCOPE_KEY] = given
            if any(SENSITIVE_PARAM.search(name) for name, _ in pairs):  # ``secret`` among them
                redacted = [(name, REDACTED if SENSITIVE_PARAM.search(name) else value) for name, value in pairs]
                scope["query_string"] = urlencode(redacted, safe="*").encode("latin-1")
        await self.app(scope, receive, send)


class _StoreFailed(Exception):
    """The records were parsed but could not be committed (or the store could not be opened)."""


class SettingsOverrides(TypedDict, total=False):
    """``ReceiverSettings`` fields an app is built with; one left out (or None) comes from the config."""

    store_conn_id: str | None
    store_table_prefix: str | None
    max_body_bytes: int | None
    read_timeout: float | None
    connection_cache_seconds: float | None


def create_app(**overrides: Unpack[SettingsOverrides]) -> FastAPI:
    """The receiver app with routes relative to its mount point (Airflow mounts it at ``/sms``).

    Arguments left out come from the Airflow config (``[sms] callback_*``), then the defaults.
    """
    given: dict[str, Any] = {name: value for name, value in overrides.items() if value is not None}
    settings = replace(ReceiverSettings.from_config(), **given)
    stores = _Stores()
    connections = _Connections(settings.connection_cache_seconds)
    weak_secrets: set[str] = set()  # connections whose too-short secret was logged (once each)

    app = FastAPI(
        title="SMS push receiver",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=_closing(stores),
    )
    app.state.settings = settings
    app.state.stores = stores
    app.add_middleware(_HideSecret)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    async def receive(request: Request) -> Response:
        conn_id, kind = request.path_params["conn_id"], request.path_params["kind"]
        answer = await _receive(conn_id, kind, request, settings, stores, connections, weak_secrets)
        # a refusal may leave the body unread: close rather than keep a half-read connection alive
        headers = {"Connection": "close"} if 400 <= answer.status < 500 else None
        return JSONResponse(answer.body, status_code=answer.status, headers=headers)

    # A plain Starlette route, not a FastAPI one: it takes two path strings and the request, nothing to
    # validate, and FastAPI's resolution of its parameters cost more CPU per push than the rest of the
    # framework's handling (a vendor pushes one record per request, thousands a second).
    app.add_route("/callbacks/{conn_id}/{kind}", receive, methods=["POST"], include_in_schema=False)
    return app


def create_standalone_app(**overrides: Unpack[SettingsOverrides]) -> FastAPI:
    """The receiver mounted at ``/sms``, so that its URLs are the same as under Airflow's API server."""
    receiver = create_app(**overrides)
    root = FastAPI(
        title="SMS push receiver",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=_closing(receiver.state.stores),
    )
    root.mount("/sms", receiver)
    root.state.receiver = receiver
    return root


def _closing(stores: _Stores) -> Callable[[FastAPI], Any]:
    """Close the stores when the server stops (mounted apps get no lifespan: Airflow's process exit does it)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        try:
            yield
        finally:
            stores.close()

    return lifespan


# ---------------------------------------------------------------------- one request


async def _receive(
    conn_id: str,
    kind: str,
    request: Request,
    settings: ReceiverSettings,
    stores: _Stores,
    connections: _Connections,
    weak_secrets: set[str],
) -> Answer:
    client = request.client.host if request.client else None
    if kind not in KINDS or not _CONN_ID.fullmatch(conn_id):
        return _NOT_FOUND
    found = connections.cached(conn_id)
    try:
        if found is None:
            found = await run_in_threadpool(connections.look_up, conn_id)
    except _NotFound:
        log.info("SMS push to %s/%s from %s: no such SMS connection", conn_id, kind, client)
        return _NOT_FOUND
    except Exception as exc:
        log.error("SMS push to %s/%s: looking up the connection failed: %s", conn_id, kind, type(exc).__name__)
        return Answer(503, {"detail": "connection lookup failed"})
    conn, extras, push = found
    if push is None or kind not in push.kinds:
        log.info("SMS push to %s/%s from %s: %s has no such push", conn_id, kind, client, conn.conn_type)
        return _NOT_FOUND
    secret = extras.get(SECRET_EXTRA)
    if secret not in (None, ""):
        _scrub_secret(request.scope, str(secret))
        if not _strong_secret(secret):
            # a trivial secret (" ", 0) would let anyone push: push stays off, as without one
            level = logging.DEBUG if conn_id in weak_secrets else logging.WARNING
            weak_secrets.add(conn_id)
            log.log(
                level,
                "SMS push to %s/%s from %s refused: push is disabled for this connection because its %s extra "
                "is not a string of at least %d characters",
                conn_id,
                kind,
                client,
                SECRET_EXTRA,
                MIN_CALLBACK_SECRET_CHARS,
            )
            return _NOT_FOUND
    elif not push.header_auth:
        log.warning(
            "SMS push to %s/%s from %s refused: push is not enabled (the connection has no %s extra)",
            conn_id,
            kind,
            client,
            SECRET_EXTRA,
        )
        return _NOT_FOUND

    # counted from here on only: before, the connection id is whatever a stranger put in the path
    tags = metrics.tags(push.vendor, conn_id, kind=kind)
    if not _client_allowed(extras.get(ALLOW_IPS_EXTRA), client, conn_id):
        log.warning("SMS push to %s/%s refused: client %s is not in %s", conn_id, kind, client, ALLOW_IPS_EXTRA)
        return _counted(push.refused(403, "client address not allowed"), tags, "refused")
    if not _authenticated(push, conn, secret, request):
        log.warning("SMS push to %s/%s from %s refused: wrong or missing credentials", conn_id, kind, client)
        return _counted(push.refused(401, "not authenticated"), tags, "refused")

    try:
        check_media_type(push, request.headers.get("content-type"))
        body = await _read_body(request, settings.max_body_bytes, settings.read_timeout)
        items = push_items(push, kind, body, request.headers.get("content-type"))
    except PushRejected as exc:
        log.warning("SMS push to %s/%s from %s rejected (%d): %s", conn_id, kind, client, exc.status, exc.problem)
        return _counted(push.refused(exc.status, exc.problem), tags, "rejected")

    try:
        saved = await run_in_threadpool(
            _parse_and_store, conn, kind, items, extras, settings, stores, connections, push.repushes
        )
    except PushRejected as exc:
        log.warning("SMS push to %s/%s from %s rejected (%d): %s", conn_id, kind, client, exc.status, exc.problem)
        return _counted(push.refused(exc.status, exc.problem), tags, "rejected")
    except _StoreFailed as exc:
        if not push.repushes:  # the log is the last copy of what was lost
            log.error(
                "SMS push to %s/%s NOT stored (%s); the vendor will not push it again: %s", conn_id, kind, exc, items
            )
        else:
            log.error("SMS push to %s/%s NOT stored (%s); answered so that the vendor pushes again", conn_id, kind, exc)
        return _counted(push.not_stored(), tags, "not_stored")
    if saved is not None:  # one line per push: debug, as vendors push thousands a second after a large send
        log.debug(
            "SMS push to %s/%s from %s: %d records stored, %d quarantined",
            conn_id,
            kind,
            client,
            saved.fetched,
            saved.quarantined,
        )
    return _counted(push.ok(), tags, "stored")


def _counted(answer: Answer, tags: dict[str, str], outcome: str) -> Answer:
    """Count an authenticated connection's push under ``sms.pushes.received`` by how it was answered."""
    metrics.incr(metrics.PUSHES_RECEIVED, 1, {**tags, "outcome": outcome})
    return answer


class _NotFound(Exception):
    """No connection of that id."""


def _connection(conn_id: str) -> tuple[Connection, Mapping[str, Any]]:
    """The connection and its extras; only its secrets are registered with the secrets masker."""
    from airflow.sdk.exceptions import AirflowNotFoundException

    from airflow_provider_sms.hooks.base import read_connection

    try:
        conn, extras = read_connection(conn_id)
    except AirflowNotFoundException:
        raise _NotFound(conn_id) from None
    return conn, extras


def _authenticated(push: VendorPush, conn: Connection, secret: Any, request: Request) -> bool:
    """All configured checks, every one evaluated (no early exit that would time the first mismatch): the
    vendor's own credentials where it sends them (its push format's rule), then the ``secret`` parameter."""
    ok = push.credentials_ok(conn.login or "", conn.password or "", request.headers.get)
    if secret not in (None, ""):
        given = request.scope.get(_SECRET_SCOPE_KEY) or []
        # a repeated parameter is ambiguous: refused, but compared all the same
        ok &= (len(given) == 1) & same_secret(given[-1] if given else None, str(secret))
    return ok


def _strong_secret(secret: Any) -> bool:
    """A ``callback_secret`` that may enable push: text of ``MIN_CALLBACK_SECRET_CHARS`` characters or more."""
    return isinstance(secret, str) and len(secret.strip()) >= MIN_CALLBACK_SECRET_CHARS


def _scrub_secret(scope: Any, secret: str) -> None:
    """Replace the connection's secret, in any form, in the path and query string that access logs write.

    ``_HideSecret`` redacts ``secret=`` (and credential-looking names) before the connection is known;
    a vendor configured with the secret under another name, or in the path, is covered here: raw,
    percent-encoded in either hex case, ``+`` for a space, and in any letter case.
    """
    if len(secret) < redaction.MIN_SECRET_CHARS:  # would match ordinary characters of the path
        return
    pattern = _secret_pattern(secret)
    path = scope.get("path")
    if isinstance(path, str):
        scope["path"] = pattern.sub(REDACTED, path)
    for key in ("raw_path", "query_string"):
        value = scope.get(key)
        if isinstance(value, bytes) and value:
            scope[key] = pattern.sub(REDACTED, value.decode("latin-1")).encode("latin-1")


@functools.lru_cache(maxsize=256)
def _secret_pattern(secret: str) -> re.Pattern[str]:
    """Each character of the secret as itself, its percent-encoded UTF-8 bytes, or its raw UTF-8 bytes
    read as latin-1 (how a query string's bytes are decoded here); a space also as ``+``."""
    parts = []
    for char in secret:
        encoded = char.encode("utf-8")
        forms = {re.escape(char), "".join(f"%{byte:02x}" for byte in encoded), re.escape(encoded.decode("latin-1"))}
        if char == " ":
            forms.add(re.escape("+"))
        parts.append("(?:" + "|".join(sorted(forms)) + ")")
    return re.compile("".join(parts), re.IGNORECASE)


def _client_allowed(spec: Any, client: str | None, conn_id: str) -> bool:
    """No allow-list: anyone. Otherwise the client address must lie in one of its IPs/CIDRs (fail closed)."""
    if spec in (None, "") or spec == []:
        return True
    entries: Sequence[Any] = spec if isinstance(spec, list) else str(spec).split(",")
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for entry in entries:
        text = str(entry).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            log.error(
                "SMS receiver: connection %s has an invalid %s entry %r; refusing", conn_id, ALLOW_IPS_EXTRA, text
            )
            return False
    if client is None:
        return False
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The body, refused (413) as soon as it is known to exceed ``limit`` bytes: by its Content-Length or while read.

    A body that has not fully arrived ``timeout`` seconds after the request was authenticated is cut
    off (408): a client that stalls mid-body would otherwise hold a connection and a worker open.
    """
    try:
        async with asyncio.timeout(timeout):
            return await _read_body_within(request, limit)
    except TimeoutError:
        raise PushRejected(408, f"the body did not arrive within {timeout:g} s") from None


async def _read_body_within(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise PushRejected(400, "invalid Content-Length") from None
        if length > limit:
            raise PushRejected(413, f"the body is {length} bytes; at most {limit} are accepted")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PushRejected(413, f"the body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_and_store(
    conn: Connection,
    kind: str,
    items: list[Mapping[str, Any]],
    extras: Mapping[str, Any],
    settings: ReceiverSettings,
    stores: _Stores,
    connections: _Connections,
    repushes: bool = True,
) -> StoredPage | None:
    """Parse the pushed records and store them, with the pushes that arrived beside them; runs in a worker thread.

    A record that cannot be parsed or stored is quarantined (kept raw, with the reason) and the others
    are stored: the push is acknowledged, since a vendor pushing it again could never make it parse. A
    page left journaled (by a crash, or by a store failure) is stored by a later push or pull of the
    same account and kind. ``repushes``: whether the vendor pushes again after a failure; when it does
    not, a group the store failed to take is journaled, if the store still takes that, so that it is
    stored later instead of living only in the error log.
    """
    from airflow_provider_sms.pulling import process_entry

    if not items:
        return None
    conn_id = conn.conn_id
    store_conn_id = str(extras.get(STORE_EXTRA) or "") or settings.store_conn_id
    prefix = str(extras.get(STORE_PREFIX_EXTRA) or "") or settings.store_table_prefix
    try:
        hook = connections.hook(conn)
        store = stores.get(store_conn_id, prefix)
    except Exception as exc:
        raise _StoreFailed(f"the store cannot be opened: {exc}") from None

    def commit(group: list[_Push], more: Callable[[Callable[[_Push], bool]], None]) -> None:
        _store_group(hook, store, kind, group, journal_on_failure=not repushes, more=more)

    try:
        stored = stores.group(store, conn_id, kind).store(items, commit)
        if stores.sweep_due(store, conn_id, kind):
            for leftover in store.open_journal(conn_id, kind, older_than=LEFTOVER_AGE):
                process_entry(hook, store, kind, leftover)
    except Exception as exc:
        stores.discard(store)
        log.debug("SMS receiver: store write failed", exc_info=True)
        raise _StoreFailed(f"{type(exc).__name__}: {exc}") from None
    return stored


def _store_group(
    hook: SmsHook,
    store: SmsStore,
    kind: str,
    group: list[_Push],
    *,
    journal_on_failure: bool,
    more: Callable[[Callable[[_Push], bool]], None] | None = None,
) -> None:
    """Store the records of a group of pushes in one commit, and nothing else: no journal row.

    The journal is what a pull needs: a vendor hands a pulled page out once, and the page is in hand
    before anything stores it. A push is answered only after this commit, so a crash before it leaves
    the vendor without an answer: a vendor that pushes again on that does, and one that never pushes
    again (account_md5) has lost the push to a crash before the first commit whether that commit is a
    journal row's or the records' own (journaling first only moved it a few milliseconds earlier).
    Journaling the pushes first would cost a commit more per group and save nothing the answer does not.

    A group with a record that will not parse, or a value the store cannot hold, or more records than
    one transaction of the store takes, is journaled in one commit and then stored push by push
    instead, so that each bad record is quarantined under its own page and the rest stored. Any other
    failure is the store's: it propagates, and every push of the group is answered "not stored".

    ``more`` (the group commit's): on a database server (PostgreSQL), once the store holds its write
    lock (the report counter's row, which other receiver processes take too), the pushes that arrived
    while it waited join the group and its commit, as long as they parse cleanly and fit in the page;
    any other is left waiting for the next group.
    """
    from airflow_provider_sms.errors import SmsPartialResponseError
    from airflow_provider_sms.hooks.base import REPORTS
    from airflow_provider_sms.pulling import StoredPage, count_page, is_data_error, process_journaled

    parsed: list[Any] = []
    try:
        try:
            for push in group:
                parsed.extend(hook.parse_pulled(kind, push.items, pushed=True))
            clean = len(parsed) <= store.page_size  # one page of the store: one transaction
        except SmsPartialResponseError:
            clean = False
        if clean:
            extra: list[Any] = []

            def gather(room: int) -> list[Any]:
                """The records of the pushes that joined the group under the lock (at most ``room``)."""

                def accept(push: _Push) -> bool:
                    try:
                        records = hook.parse_pulled(kind, push.items, pushed=True)
                    except Exception:  # not clean: its own group deals with it
                        return False
                    if len(extra) + len(records) > room:
                        return False
                    extra.extend(records)
                    return True

                if more is not None:
                    more(accept)
                return extra

            # Not on SQLite: the embedded file's writer under load is this process alone, whose group commit
            # already queues the pushes; taking them along there only adds a second lookup to the commit.
            joins = gather if parsed and store.dialect != "sqlite" else None
            try:
                if kind == REPORTS:
                    saved = store.save_reports(parsed, conn_id=hook.sms_conn_id, more=joins)
                else:
                    saved = store.save_inbound(parsed, conn_id=hook.sms_conn_id, more=joins)
            except Exception as exc:
                if not is_data_error(exc):
                    raise
            else:
                for push in group:
                    push.stored = StoredPage(len(push.items), saved, 0)
                # once: the group's statuses
                count_page(hook, kind, "push", StoredPage(len(parsed) + len(extra), saved, 0))
                return
    except Exception:
        if journal_on_failure:
            _journal_quietly(hook, store, kind, group)
        raise
    ids = _journal_group(hook, store, kind, group)
    for push, journal_id in zip(group, ids, strict=True):
        push.stored = process_journaled(hook, store, kind, push.items, journal_id, source="push")


def _journal_group(hook: SmsHook, store: SmsStore, kind: str, group: list[_Push]) -> list[int]:
    """Journal each push of a group as its own page, in one commit; the pages' ids, in order."""
    return store.journal_pages([push.items for push in group], conn_id=hook.sms_conn_id, vendor=hook.vendor, kind=kind)


def _journal_quietly(hook: SmsHook, store: SmsStore, kind: str, group: list[_Push]) -> None:
    """Journal a group that the store failed to take, if it still takes that: a later push or pull
    stores it (for a vendor that does not push again). A second failure changes nothing."""
    try:
        _journal_group(hook, store, kind, group)
    except Exception:
        log.debug("SMS receiver: journaling a group the store failed to take failed too", exc_info=True)


__all__ = [
    "ALLOW_IPS_EXTRA",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_READ_TIMEOUT",
    "MIN_CALLBACK_SECRET_CHARS",
    "SECRET_EXTRA",
    "SECRET_PARAM",
    "STORE_EXTRA",
    "STORE_PREFIX_EXTRA",
    "ReceiverSettings",
    "create_app",
    "create_standalone_app",
]
