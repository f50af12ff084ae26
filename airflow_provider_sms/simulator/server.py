"""Real HTTP(S) servers for the simulated gateways, plus a small admin API for tests and demos.

Plain HTTP serves paasw_v2, paasw_v1, intl and account_md5 (their routes do not overlap); cloud_mas
gets its own HTTPS port with a self-signed certificate made at start, as the real Cloud MAS has, and
its HTTP variant (``/sms/norsubmit`` and the rest, for accounts opened on HTTP) on the HTTP port.
Admin endpoints live under ``/_sim/`` on the HTTP port. They answer loopback clients; another host
is refused (403) unless an admin token is configured (``admin_token=`` or ``SMS_SIM_ADMIN_TOKEN``)
and the call carries it in the ``X-Sim-Admin-Token`` header: the admin API resets state, injects
faults and points pushes anywhere, which nobody else on the network should be able to do.
"""

from __future__ import annotations

import hmac
import importlib
import ipaddress
import json
import logging
import os
import ssl
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from airflow_provider_sms.simulator.core import (
    DEFAULT_ACCOUNTS,
    Account,
    BadRequest,
    Fault,
    Gateway,
    Handler,
    SimConfig,
    SimRequest,
    SimResponse,
    VendorProtocol,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
#: environment variable holding the admin token (``GatewaySimulator(admin_token=...)`` wins)
ADMIN_TOKEN_ENV = "SMS_SIM_ADMIN_TOKEN"
#: the header an admin call from another host carries the token in
ADMIN_TOKEN_HEADER = "X-Sim-Admin-Token"
#: the text signature of the simulated accounts whose vendor wants one in the text (``demo_connection_json``)
DEMO_SIGNATURE = "模拟签名"


def load_protocols(gateway: Gateway) -> list[VendorProtocol]:
    """Every simulated vendor's protocol (``core.DEFAULT_ACCOUNTS`` names them), from ``simulator/<vendor>.py``."""
    protocols = []
    for vendor in DEFAULT_ACCOUNTS:
        module = importlib.import_module(f"{__package__}.{vendor}")
        cls = next(
            obj
            for obj in vars(module).values()
            if isinstance(obj, type) and issubclass(obj, VendorProtocol) and obj.vendor == vendor
        )
        protocols.append(cls(gateway))
    return protocols


class _Router:
    def __init__(self, protocols: list[VendorProtocol], *, https: bool) -> None:
        """The routes one port serves: each vendor's own on its port, plus HTTPS vendors' plain-HTTP twins."""
        self.routes: dict[tuple[str, str], tuple[VendorProtocol, Handler]] = {}
        for protocol in protocols:
            own_port = protocol.https == https
            table = protocol.routes() if own_port else protocol.plain_http_routes() if not https else {}
            for key, handler in table.items():
                if key in self.routes:
                    raise ValueError(f"route {key} is claimed by two vendors")
                self.routes[key] = (protocol, handler)
        self.paths = {path for _, path in self.routes}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without this, Nagle + delayed ACK stall each reply ~40 ms
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        length = self._content_length()
        if length is None or length > MAX_BODY_BYTES:
            # the body is left unread, so where a next request would start is unknown: close
            refusal = (
                SimResponse.text("bad request: invalid Content-Length", 400)
                if length is None
                else SimResponse.text("body too large", 413)
            )
            refusal.headers["Connection"] = "close"
            self.close_connection = True
            self._write(refusal)
            return
        body = self.rfile.read(length) if length else b""
        request = SimRequest(
            method=self.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=dict(self.headers.items()),
            body=body,
            client=self.client_address[0],
        )
        simulator = self.server.simulator
        if parts.path.startswith("/_sim/") and not self.server.is_https:
            self._write(simulator.admin(request))
            return
        route = self.server.router.routes.get((request.method, request.path))
        if route is None:
            status = 405 if request.path in self.server.router.paths else 404
            self._write(SimResponse.text(f"<html><body><h1>{status}</h1></body></html>", status, "text/html"))
            return
        protocol, handler = route
        gateway = simulator.gateway
        gateway.count_request(protocol.vendor, request.path)
        if gateway.config.latency > 0:
            time.sleep(gateway.config.latency)
        if request.path in protocol.paced_paths and not gateway.pull_allowed(protocol.vendor, request.path):
            self._write(protocol.too_fast(request.path))
            return
        fault = gateway.take_fault(protocol.vendor, request.path)
        response = self._faulty(fault, protocol, handler, request) if fault else self._handle(handler, request)
        self._write(response)

    def _content_length(self) -> int | None:
        """The declared body length (0 when absent); None for anything but ASCII digits (``-1``, ``abc``),
        or disagreeing repeats, which must never turn into a read to EOF or a crash."""
        values = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if not values:
            return 0
        if len(values) > 1:
            return None
        [value] = values
        return int(value) if value.isascii() and value.isdigit() else None

    @staticmethod
    def _handle(handler: Handler, request: SimRequest) -> SimResponse:
        try:
            return handler(request)
        except BadRequest as exc:
            return SimResponse.text(f"bad request: {exc}", 400)

    def _faulty(self, fault: Fault, protocol: VendorProtocol, handler: Handler, request: SimRequest) -> SimResponse:
        if fault.kind == "delay":
            response = self._handle(handler, request)
            time.sleep(fault.seconds)
            return response
        if fault.kind == "garbage":
            return protocol.garbage_reply()
        if fault.kind == "mangled":
            response = self._handle(handler, request)
            response.body += b"\n<!-- served by edge-cache-7 -->"
            return response
        if fault.kind == "nested":
            response = self._handle(handler, request)
            response.body = b"[" * 5000 + response.body + b"]" * 5000
            return response
        if fault.kind == "html":
            return SimResponse.text(
                "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>", 502, "text/html"
            )
        return SimResponse.text(f"<html><body>error {fault.status}</body></html>", fault.status, "text/html")

    def _write(self, response: SimResponse) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True  # the client went away (or died) before its answer

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        simulator: GatewaySimulator,
        router: _Router,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.simulator = simulator
        self.router = router
        self.tls = tls

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (a killed worker, a timeout) is routine for a gateway."""
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, ssl.SSLError, TimeoutError)):
            log.debug("client %s went away: %s", client_address, error)
            return
        super().handle_error(request, client_address)

    @property
    def is_https(self) -> bool:
        return self.tls is not None

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS handshakes run here, on the connection's own thread, so a silent client blocks nobody else."""
        if self.tls is not None:
            try:
                request.settimeout(10)
                request = self.tls.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (OSError, ssl.SSLError):
                return
        super().finish_request(request, client_address)


def _self_signed_context(directory: Path, host: str) -> ssl.SSLContext:
    """A throwaway certificate for the HTTPS port, as Cloud MAS ships none a client could verify."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sms-gateway-simulator")])
    alt_names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        alt_names.append(x509.DNSName(host))
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


class GatewaySimulator:
    """All five simulated gateways in this process, on localhost.

    >>> with GatewaySimulator() as sim:
    ...     sim.http_url, sim.https_url
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        http_port: int = 0,
        https_port: int = 0,
        config: SimConfig | None = None,
        accounts: dict[str, Account] | None = None,
        admin_token: str | None = None,
    ) -> None:
        self.host = host
        #: lets admin calls from other hosts in (header ``X-Sim-Admin-Token``); loopback needs none
        self.admin_token = admin_token if admin_token is not None else os.environ.get(ADMIN_TOKEN_ENV) or None
        self.gateway = Gateway(config, accounts)
        protocols = load_protocols(self.gateway)
        self._https_vendors = {protocol.vendor for protocol in protocols if protocol.https}
        self._tmp = tempfile.TemporaryDirectory(prefix="sms-sim-")
        self.cert_path = str(Path(self._tmp.name) / "cert.pem")
        self._http = _Server((host, http_port), self, _Router(protocols, https=False))
        context = _self_signed_context(Path(self._tmp.name), host)
        self._https = _Server((host, https_port), self, _Router(protocols, https=True), context)
        self._threads: list[threading.Thread] = []

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self._http.server_address[1]}"

    @property
    def https_url(self) -> str:
        return f"https://{self.host}:{self._https.server_address[1]}"

    def base_url(self, vendor: str) -> str:
        return self.https_url if vendor in self._https_vendors else self.http_url

    def start(self) -> GatewaySimulator:
        for server in (self._http, self._https):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in (self._http, self._https):
            server.shutdown()
            server.server_close()
        self._tmp.cleanup()

    def __enter__(self) -> GatewaySimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- what tests and demos use

    def connection_json(self, vendor: str, **extra: Any) -> str:
        """An Airflow connection (JSON form, for ``AIRFLOW_CONN_*``) for the simulated account of ``vendor``."""
        account = self.gateway.account(vendor)
        extras: dict[str, Any] = {**account.extra, **extra}
        if vendor in self._https_vendors:  # its certificate is the self-signed one made at start
            extras.setdefault("verify", "false")
        return json.dumps(
            {
                "conn_type": f"sms_{vendor}",
                "host": self.base_url(vendor),
                "login": account.login,
                "password": account.secret,
                "extra": extras,
            }
        )

    def demo_connection_json(self, vendor: str, **extra: Any) -> str:
        """``connection_json`` as a configured account has it: with the account's text signature in the ``sign``
        extra, so that example DAGs pass only the text and run alike on every vendor (cloud_mas already has
        its signature code there)."""
        account = self.gateway.account(vendor)
        signature = {} if "sign" in account.extra else {"sign": DEMO_SIGNATURE}
        return self.connection_json(vendor, **{**signature, **extra})

    def admin(self, request: SimRequest) -> SimResponse:
        """``/_sim/`` endpoints: state, ledger, reset, config, faults, tokens, inbound, balance, push-config, push.

        ``GET /_sim/ledger[?vendor=V][&numbers=1]`` audits what the vendors did: per number how many
        times it was accepted, per report and inbound message how many times it was handed out.

        ``POST /_sim/push-config {vendor, kind, url}`` makes the vendor push ``kind`` (``reports`` or
        ``inbound``) to ``url`` instead of queueing it for pulls (``url`` null or empty: back to pulls);
        ``POST /_sim/push {vendor?}`` pushes what is due now and answers with one outcome per POST.

        Loopback clients only, unless the call carries the configured admin token (403 otherwise).
        """
        if not self.admin_allowed(request):
            log.warning("admin call %s %s from %s refused", request.method, request.path, request.client)
            return SimResponse.json(
                {"error": f"admin calls are taken from loopback clients, or with the {ADMIN_TOKEN_HEADER} header"},
                403,
            )
        try:
            return self._admin(request)
        except BadRequest as exc:
            return SimResponse.json({"error": str(exc)}, 400)
        except KeyError as exc:
            return SimResponse.json({"error": f"missing field {exc.args[0]!r}"}, 400)
        except (ValueError, TypeError, ArithmeticError) as exc:
            return SimResponse.json({"error": f"bad value: {exc}"}, 400)

    def admin_allowed(self, request: SimRequest) -> bool:
        """A loopback client, or the configured admin token in the header (compared in constant time)."""
        if _is_loopback(request.client):
            return True
        if not self.admin_token:
            return False
        given = request.header(ADMIN_TOKEN_HEADER) or ""
        return hmac.compare_digest(given.encode("utf-8"), self.admin_token.encode("utf-8"))

    def _admin(self, request: SimRequest) -> SimResponse:
        gateway = self.gateway
        action = request.path[len("/_sim/") :]
        payload = request.json() if request.body else {}
        if not isinstance(payload, dict):
            raise BadRequest("admin payloads are JSON objects")
        if action == "state" and request.method == "GET":
            return SimResponse.json(gateway.stats())
        if action == "ledger" and request.method == "GET":
            # ?vendor=paasw_v2 for one vendor, &numbers=1 for every number's acceptance count
            with gateway.lock:
                ledger = gateway.ledger.summary(
                    request.query.get("vendor") or None, numbers=request.query.get("numbers") in ("1", "true")
                )
            return SimResponse.json(ledger)
        if request.method != "POST":
            return SimResponse.json({"error": f"unknown admin call {request.method} {request.path}"}, 404)
        if action == "reset":
            gateway.reset()
        elif action == "config":
            for key, given in payload.items():
                if not hasattr(gateway.config, key):
                    return SimResponse.json({"error": f"unknown config key {key!r}"}, 400)
                value = given
                if key == "content_failure_rates":  # fragment -> share, checked here rather than at a send
                    value = {str(fragment): float(rate) for fragment, rate in dict(given).items()}
                setattr(gateway.config, key, type(getattr(gateway.config, key))(value))
        elif action == "faults":
            gateway.add_fault(
                Fault(
                    kind=str(payload.get("kind", "status")),
                    remaining=int(payload.get("count", 1)),
                    vendor=payload.get("vendor"),
                    path=payload.get("path"),
                    status=int(payload.get("status", 503)),
                    seconds=float(payload.get("seconds", 0)),
                )
            )
        elif action == "revoke-tokens":
            gateway.revoke_tokens(payload.get("vendor"))
        elif action == "inbound":
            gateway.add_inbound(
                payload["vendor"], str(payload["mobile"]), str(payload["content"]), str(payload.get("ext_no", ""))
            )
        elif action == "balance":
            gateway.balances[payload["vendor"]] = Decimal(str(payload["amount"]))
        elif action == "push-config":
            url = payload["url"]
            if url is not None and not isinstance(url, str):
                raise BadRequest("url must be a string or null")
            gateway.configure_push(str(payload["vendor"]), str(payload["kind"]), url)
        elif action == "push":
            vendor = payload.get("vendor")
            outcomes = gateway.push_due(None if vendor is None else str(vendor))
            return SimResponse.json({"ok": True, "pushes": [outcome.to_dict() for outcome in outcomes]})
        else:
            return SimResponse.json({"error": f"unknown admin call {request.path}"}, 404)
        return SimResponse.json({"ok": True})


def _is_loopback(client: str | None) -> bool:
    try:
        address = ipaddress.ip_address(client or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback
