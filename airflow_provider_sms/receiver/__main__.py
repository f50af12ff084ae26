"""Run the push receiver on its own, for teams that do not expose Airflow's API server.

    python -m airflow_provider_sms.receiver --host 0.0.0.0 --port 8790 [--store-conn-id sms_store]
        [--ssl-certfile cert.pem --ssl-keyfile key.pem] [--forwarded-allow-ips 10.0.0.5]

Connections are read as any Airflow process outside a task reads them: ``AIRFLOW_CONN_*``
environment variables and the secrets backends configured in the Airflow config.
The uvicorn access log shows request paths with secret-looking query values replaced by ``***``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from airflow_provider_sms.redaction import SENSITIVE_PARAM

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8790
#: seconds a stop waits for open connections (an idle vendor connection must not keep the process alive)
GRACEFUL_SHUTDOWN_SECONDS = 10


def redact_query(path: str) -> str:
    """``/sms/callbacks/x/reports?secret=abc`` -> ``/sms/callbacks/x/reports?secret=***``."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    pairs = parse_qsl(query, keep_blank_values=True)
    return f"{base}?{urlencode([(k, '***' if SENSITIVE_PARAM.search(k) else v) for k, v in pairs], safe='*')}"


class RedactQueryFilter(logging.Filter):
    """Rewrites the path argument of uvicorn's access log records (``%s - "%s %s HTTP/%s" %d``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_sms.receiver",
        description="Receive SMS vendors' pushed delivery reports and inbound messages into the SMS store.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--store-conn-id",
        default=None,
        help="SQLite/PostgreSQL connection of the SMS store (default: [sms] callback_store_conn_id, "
        "else the embedded $AIRFLOW_HOME/sms_store.db); a connection's callback_store_conn_id extra wins",
    )
    parser.add_argument("--store-table-prefix", default=None, help="table prefix of the store (default sms_)")
    parser.add_argument("--max-body-bytes", type=int, default=None, help="largest body accepted (default 1 MiB)")
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=None,
        help="seconds an authenticated request's body may take to arrive before it is cut off with 408 "
        "(default: [sms] callback_read_timeout, else 10)",
    )
    parser.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="trust X-Forwarded-For from these proxy addresses (comma list), so that callback_allow_ips "
        "sees the vendor's address rather than the proxy's",
    )
    parser.add_argument("--ssl-certfile", default=None, help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--ssl-keyfile", default=None, help="the certificate's private key (PEM)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    from airflow_provider_sms.receiver.app import create_standalone_app

    args = parse_args(argv)
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise SystemExit("--ssl-certfile and --ssl-keyfile go together")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_standalone_app(
        store_conn_id=args.store_conn_id,
        store_table_prefix=args.store_table_prefix,
        max_body_bytes=args.max_body_bytes,
        read_timeout=args.read_timeout,
    )
    options: dict[str, Any] = {}
    if args.forwarded_allow_ips:
        options.update(proxy_headers=True, forwarded_allow_ips=args.forwarded_allow_ips)
    else:
        options.update(proxy_headers=False)
    if args.ssl_certfile:
        options.update(ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        **options,
    )
    # after uvicorn set up its logging: Airflow's logging setup leaves uvicorn.error not propagating to
    # uvicorn's handler, which would hide the "Uvicorn running on ..." line
    logging.getLogger("uvicorn.error").propagate = True
    logging.getLogger("uvicorn.access").addFilter(RedactQueryFilter())
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
