"""China Mobile Cloud MAS (``cloud-mas.txt``): MAC-signed base64 JSON bodies, 5-second pulls, HTTPS or HTTP.

The document describes the HTTPS interface (``/sms/submit``). Accounts opened on HTTP send the same
body to ``/sms/norsubmit`` instead: Cloud MAS's integration desk gives "HTTP 普通短信
http://112.35.1.155:1992/sms/norsubmit" and "https 普通短信 https://112.35.10.201:28888/sms/submit"
(quoted in the IGeekFan.MAS client), and the public clients written against the HTTP endpoint post
there. So the send path follows the scheme of the connection's host; ``/sms/tmpsubmit`` is the same on
both.

Every request body is the base64 text of a UTF-8 JSON object, sent as ``application/json;charset=utf-8``
(the document's "json（base64加密）" names no content type; JSON is the data type it states). Sends are
authenticated by ``mac``, an MD5 over the fields in the document's order, so the secretKey itself never
travels with a send; the report and inbound pulls, however, carry the secretKey in the body, which is why
no request body is ever logged. The vendor supplies no certificate and tells clients to skip verification,
so ``verify`` defaults to off (with a warning), and can be a CA bundle path or on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import InsecureRequestWarning

from airflow_provider_sms import redaction
from airflow_provider_sms.errors import (
    SmsConfigurationError,
    SmsInvalidNumbersError,
    SmsInvalidRequestError,
    SmsResponseError,
)
from airflow_provider_sms.hooks.base import (
    INBOUND,
    PULL_OPERATIONS,
    QUEUE,
    REPORTS,
    SEND,
    SEND_TEMPLATE,
    SendRequest,
    SmsHook,
    parse_id,
)
from airflow_provider_sms.numbers import normalize_mobiles
from airflow_provider_sms.records import DeliveryReport, InboundMessage, SendReceipt

SUBMIT_PATH = "/sms/submit"
#: the HTTP variant of SUBMIT_PATH, same body
NORSUBMIT_PATH = "/sms/norsubmit"
TEMPLATE_PATH = "/sms/tmpsubmit"
REPORT_PATH = "/sms/report"
INBOUND_PATH = "/sms/deliver"

CONTENT_TYPE = "application/json;charset=utf-8"
REPORT_TIME_FORMAT = "%Y%m%d%H%M%S"
INBOUND_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SUCCESS = "success"
DELIVERED_STATUS = "DELIVRD"

#: "号码数量小于1000个": many-to-many requests take at most 999 numbers.
MAX_PERSONALIZED_PER_REQUEST = 999
#: "服务代码加扩展码总长度不能超过20位": the service code is unknown here, so only the overall cap is checked.
MAX_ADD_SERIAL_DIGITS = 20

#: ``rspcod`` values of the send and template replies, as the document's tables explain them.
RSPCOD_MEANINGS: dict[str, str] = {
    "IllegalMac": "MAC check failed (md5 of the fields in document order with the secretKey, lower-case hex)",
    "IllegalSignId": "invalid signature code (the connection's sign extra or the signature option)",
    "InvalidMessage": "the request could not be parsed",
    "InvalidUsrOrPwd": "wrong ecName, apId or secretKey",
    "NoSignId": "no signature matched the signature code",
    "TooManyMobiles": "too many mobile numbers (at most 5000; fewer than 1000 in many-to-many mode)",
}

_FALSE = ("false", "0", "no", "off")
_TRUE = ("true", "1", "yes", "on")
_UNDECODABLE: Any = object()

_hush_lock = threading.Lock()


def _hush_unverified_tls_warning(host: str) -> None:
    """Drop urllib3's InsecureRequestWarning for this one vendor host.

    The hook already logs once that verification is off, as the vendor instructs; a warning per call
    would bury the task log. A filter on the host's own message is safe from any thread, where
    ``warnings.catch_warnings`` around each call is not, and leaves every other host's warning alone.
    Checked on every new session, as code such as pytest resets the filters between its tests.
    """
    message = rf"Unverified HTTPS request is being made to host '{re.escape(host)}'"
    with _hush_lock:
        if not any(f[0] == "ignore" and f[1] is not None and f[1].pattern == message for f in warnings.filters):
            warnings.filterwarnings("ignore", message=message, category=InsecureRequestWarning)


@dataclass(frozen=True)
class PersonalizedSendRequest(SendRequest):
    """A many-to-many request: each number gets its own text (``texts`` keeps the caller's order)."""

    texts: tuple[tuple[str, str], ...] = ()

    @property
    def description(self) -> str:
        return f"personalized send request #{self.index + 1}"


class CloudMasHook(SmsHook):
    """Hook for the ``sms_cloud_mas`` connection: login is the apId, password the secretKey.

    Extras: ``ec_name`` (required), ``sign`` (signature code, required for sends), ``add_serial``
    (extension code, default ``""``), ``verify`` (``false`` by default as the vendor instructs, ``true``,
    or a CA bundle path). There is no balance endpoint. A ``http://`` host sends to ``/sms/norsubmit``
    (the HTTP account's endpoint), anything else to the document's ``/sms/submit``.
    """

    vendor = "cloud_mas"
    default_scheme = "https"
    max_numbers_per_request = 5000
    features = frozenset({SEND, SEND_TEMPLATE, REPORTS, INBOUND})
    #: rspcod InvalidUsrOrPwd (wrong ecName, apId or secretKey) is the account's problem, not the message's;
    #: there is no balance, so no code means an insufficient one
    not_accepted_codes: ClassVar[frozenset[str]] = frozenset({"InvalidUsrOrPwd"})
    supported_options = frozenset({"signature", "ext_no"})
    report_mode = QUEUE

    #: "在获取状态报告和上行短息请求5秒钟内只能请求一次": seconds between two pulls of one endpoint.
    pull_interval: ClassVar[float] = 5.0
    #: Added to ``pull_interval``: the vendor times arrivals, we time departures, and the first call of a
    #: session also pays the TLS handshake, so back-to-back pulls would otherwise land a little early.
    pull_margin: ClassVar[float] = 0.25

    _tls_warning_logged: bool = False

    # ------------------------------------------------------------------ connection

    @cached_property
    def ec_name(self) -> str:
        value = str(self.config.extra("ec_name", "")).strip()
        if not value:
            raise SmsConfigurationError(
                f"connection {self.sms_conn_id!r} ({self.conn_type}) is missing the 'ec_name' extra "
                "(the enterprise name, ecName, registered with Cloud MAS)"
            )
        return value

    def _credentials(self) -> tuple[str, str, str]:
        ap_id, secret = self.require_login_and_password("apId (login)", "secretKey (password)")
        return self.ec_name, ap_id, secret

    @cached_property
    def submit_path(self) -> str:
        """Where a one-text or many-to-many send goes: HTTP accounts use ``/sms/norsubmit``."""
        return NORSUBMIT_PATH if urlsplit(self.config.base_url).scheme.lower() == "http" else SUBMIT_PATH

    @cached_property
    def uses_tls(self) -> bool:
        return urlsplit(self.config.base_url).scheme.lower() != "http"

    @cached_property
    def tls_verify(self) -> bool | str:
        """``verify`` for requests: off unless the connection says ``true`` or names a CA bundle."""
        value = self.config.extras.get("verify")
        if value is None or value == "":
            return False
        if isinstance(value, bool):
            return value
        text = str(value).strip()
        if text.lower() in _FALSE:
            return False
        if text.lower() in _TRUE:
            return True
        if not os.path.isfile(text):
            raise SmsConfigurationError(
                f"connection {self.sms_conn_id!r}: extra 'verify' must be false, true or the path of a CA "
                f"bundle file; {text!r} is not a file"
            )
        return text

    @cached_property
    def session(self) -> requests.Session:
        session = super().session
        # Also passed on every call (see SmsHook.request), so the environment cannot override it.
        session.verify = self.tls_verify
        if self.tls_verify is False:
            _hush_unverified_tls_warning(urlsplit(self.config.base_url).hostname or "")
        if self.tls_verify is False and self.uses_tls and not self._tls_warning_logged:
            self._tls_warning_logged = True
            self.log.warning(
                "%s: TLS certificate verification is off for %s, as the vendor instructs (it supplies no "
                "certificate); set the connection's verify extra to a CA bundle path to verify the server",
                self.vendor,
                self.config.base_url,
            )
        return session

    def _verify_description(self) -> str:
        if not self.uses_tls:
            return f"plain HTTP, sends to {NORSUBMIT_PATH}"
        if self.tls_verify is False:
            return "TLS verification off"
        if self.tls_verify is True:
            return "TLS verified against the system CA store"
        return f"TLS verified against {self.tls_verify}"

    # ------------------------------------------------------------------ wire

    def _post(
        self,
        path: str,
        payload: Mapping[str, str],
        operation: str,
        send: SendRequest | None = None,
        **kwargs: Any,
    ) -> tuple[Any, requests.Response]:
        """POST the payload; returns the decoded reply and the response."""
        response = self._response(path, payload, operation, send, **kwargs)
        return self._decode(response, operation), response

    def _response(
        self,
        path: str,
        payload: Mapping[str, str],
        operation: str,
        send: SendRequest | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """POST the base64 text of the JSON payload, which may hold the secretKey: it is never logged."""
        text = json.dumps(dict(payload), ensure_ascii=False, separators=(",", ":"))
        body = base64.b64encode(text.encode("utf-8"))
        return self.request(
            operation,
            "POST",
            path,
            data=body,
            headers={"Content-Type": CONTENT_TYPE},
            send=send,
            verify=self.tls_verify,
            **kwargs,
        )

    def reply_is_readable(self, response: requests.Response) -> bool:
        return super().reply_is_readable(response) or _base64_json(response.content) is not _UNDECODABLE

    def _decode(self, response: requests.Response, operation: str) -> Any:
        """The reply as JSON; base64-wrapped JSON (like the requests) is accepted too."""
        try:
            return self.parse_json(response, operation)
        except SmsResponseError:
            decoded = _base64_json(response.content) if response.status_code < 400 else _UNDECODABLE
            if decoded is _UNDECODABLE:
                raise
            return decoded

    def _raise_for_rspcod(self, reply: Any, operation: str, response: requests.Response) -> None:
        rspcod = self.field(reply, "rspcod", operation, response)
        if str(rspcod) != SUCCESS:
            raise self.vendor_error(rspcod, None, RSPCOD_MEANINGS, operation)

    def mac(self, *parts: str) -> str:
        """md5 of the parts joined without separators, 32 lower-case hex; it digests the secret, so it is
        redacted from any reply quoted in an error.

        Not handed to Airflow's masker, unlike the secret: a MAC travels only inside the base64 body, so no
        log line carries it, and the masker compiles its pattern again for every new value (a send of 200
        requests spent 16 s in it, 400 requests two minutes).
        """
        value = hashlib.md5("".join(parts).encode("utf-8")).hexdigest()
        redaction.remember_digest(value)
        return value

    # ------------------------------------------------------------------ sending

    def send_personalized(self, messages: Mapping[str, str], **options: Any) -> list[SendReceipt]:
        """Many-to-many: each number gets its own text; one receipt per request of at most 999 numbers."""
        return list(self.iter_send(self.plan_personalized(messages, **options)))

    def plan_personalized(self, messages: Mapping[str, str], **options: Any) -> list[SendRequest]:
        """Validate a many-to-many send and cut it into requests, like ``plan_send`` does for one text."""
        self._require(SEND)
        send_options = self._parse_options(options)
        if not isinstance(messages, Mapping):
            raise SmsInvalidRequestError(
                f"{self.vendor}: personalized messages must be a mapping of mobile number to text, "
                f"got {type(messages).__name__}"
            )
        texts: dict[str, str] = {}
        invalid: list[str] = []
        for raw, text in messages.items():
            valid, bad = normalize_mobiles([str(raw)], international=self.international)
            if bad or not valid:
                invalid.append(str(raw).strip())
                continue
            number = valid[0]
            self.check_text(text, f"the message for {number}")
            if texts.get(number, text) != text:
                raise SmsInvalidRequestError(f"{self.vendor}: {number} is given twice with different messages")
            texts[number] = text
        if invalid:
            raise SmsInvalidNumbersError(self.vendor, invalid, len(messages))
        if not texts:
            raise SmsInvalidRequestError(f"{self.vendor}: no messages to send")
        items = list(texts.items())
        planned: list[SendRequest] = []
        for index, start in enumerate(range(0, len(items), MAX_PERSONALIZED_PER_REQUEST)):
            chunk = tuple(items[start : start + MAX_PERSONALIZED_PER_REQUEST])
            planned.append(
                PersonalizedSendRequest(
                    index=index,
                    mobiles=tuple(number for number, _ in chunk),
                    content=None,
                    options=send_options,
                    texts=chunk,
                )
            )
        for request in planned:
            self._validate_request(request)
        return planned

    def _sign(self, request: SendRequest) -> str:
        return str(request.options.signature or self.config.extra("sign", "")).strip()

    def _add_serial(self, request: SendRequest) -> str:
        return str(request.options.ext_no or self.config.extra("add_serial", "")).strip()

    def _validate_request(self, request: SendRequest) -> None:
        self._credentials()
        if not self._sign(request):
            raise SmsConfigurationError(
                f"{self.vendor}: no signature code: set the connection's 'sign' extra or pass signature=..."
            )
        add_serial = self._add_serial(request)
        if add_serial and not (
            add_serial.isascii() and add_serial.isdigit() and len(add_serial) <= MAX_ADD_SERIAL_DIGITS
        ):
            raise SmsInvalidRequestError(
                f"{self.vendor}: the extension code (addSerial) must be digits, "
                f"at most {MAX_ADD_SERIAL_DIGITS} with the service code, got {add_serial!r}"
            )
        if request.template_id is not None:
            if not str(request.template_id).strip():
                raise SmsInvalidRequestError(f"{self.vendor}: template id is empty")
            self._template_params(request.params)

    def _template_params(self, params: Any) -> str:
        """``params`` as the JSON array string the vendor wants; ``[""]`` for a template without variables."""
        if params is None:
            values: list[Any] = []
        elif isinstance(params, str):
            try:
                parsed = json.loads(params)
            except ValueError:
                parsed = None
            if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
                raise SmsInvalidRequestError(
                    f"{self.vendor}: template params given as a string must be a JSON array of strings, "
                    f'e.g. \'["123456","5"]\'; got {params!r}'
                )
            return params if parsed else '[""]'
        elif isinstance(params, (list, tuple)):
            values = list(params)
        else:
            raise SmsInvalidRequestError(
                f"{self.vendor}: template params are positional: pass a list of values, not {type(params).__name__}"
            )
        if any(isinstance(v, bool) or not isinstance(v, (str, int, Decimal)) for v in values):
            raise SmsInvalidRequestError(f"{self.vendor}: template params must be strings or numbers, got {values!r}")
        return json.dumps([str(v) for v in values] or [""], ensure_ascii=False, separators=(",", ":"))

    def _submit(self, request: SendRequest) -> SendReceipt:
        ec_name, ap_id, secret = self._credentials()
        sign, add_serial = self._sign(request), self._add_serial(request)
        operation = request.description
        if request.template_id is not None:
            template_id, mobiles = str(request.template_id).strip(), ",".join(request.mobiles)
            params = self._template_params(request.params)
            path = TEMPLATE_PATH
            payload = {
                "ecName": ec_name,
                "apId": ap_id,
                "templateId": template_id,
                "mobiles": mobiles,
                "params": params,
                "sign": sign,
                "addSerial": add_serial,
                "mac": self.mac(ec_name, ap_id, secret, template_id, mobiles, params, sign, add_serial),
            }
        else:
            if isinstance(request, PersonalizedSendRequest):
                mobiles = ""
                content = json.dumps(dict(request.texts), ensure_ascii=False, separators=(",", ":"))
            else:
                mobiles, content = ",".join(request.mobiles), request.content or ""
            path = self.submit_path
            payload = {
                "ecName": ec_name,
                "apId": ap_id,
                "mobiles": mobiles,
                "content": content,
                "sign": sign,
                "addSerial": add_serial,
                "mac": self.mac(ec_name, ap_id, secret, mobiles, content, sign, add_serial),
            }
        reply, response = self._post(path, payload, operation, send=request)
        self._raise_for_rspcod(reply, operation, response)
        if reply.get("success") not in (None, True, "true"):
            raise self.bad_reply(operation, "rspcod is success but success is not true", response)
        # The real gateway answers "msgGroup", as its reports do and the public clients read it; the
        # document's send tables spell it "mgsGroup", which is still taken when msgGroup is absent or empty.
        group = reply.get("msgGroup") if reply.get("msgGroup") not in (None, "") else reply.get("mgsGroup")
        try:
            batch_id = parse_id(group, field_name="msgGroup (document: mgsGroup)")
        except ValueError as exc:
            raise self.bad_reply(operation, f"no usable batch id: {exc}", response) from None
        return SendReceipt(self.vendor, batch_id, request.mobiles, self.now(), raw=dict(reply))

    # ------------------------------------------------------------------ pulls

    def pull_interval_for(self, operation: str) -> float:
        """Each pull (every attempt, retries included) keeps the 5-second limit of its endpoint, in every
        process that shares the task's store (``pace_with``); a 429's Retry-After is honoured too."""
        if operation in PULL_OPERATIONS.values() and self.pull_interval > 0:
            return self.pull_interval + self.pull_margin
        return 0.0

    def _pull_records(self, kind: str) -> list[Mapping[str, Any]]:
        """One pull; the body carries the secretKey."""
        ec_name, ap_id, secret = self._credentials()
        payload = {"ecName": ec_name, "apId": ap_id, "secretKey": secret}
        response = self._response(REPORT_PATH if kind == REPORTS else INBOUND_PATH, payload, PULL_OPERATIONS[kind])
        return self._records_in_reply(kind, response)

    def _records_in_reply(self, kind: str, response: requests.Response) -> list[Mapping[str, Any]]:
        operation = PULL_OPERATIONS[kind]
        reply = self._decode(response, operation)
        if reply is None:
            return []
        if isinstance(reply, Mapping):
            if "rspcod" in reply:
                self._raise_for_rspcod(reply, operation, response)
            raise self.bad_reply(operation, "expected a JSON list of records, got an object", response)
        if not isinstance(reply, list) or not all(isinstance(item, Mapping) for item in reply):
            raise self.bad_reply(operation, f"expected a JSON list of objects, got {type(reply).__name__}", response)
        return reply

    def report_from_record(self, item: Mapping[str, Any], *, pushed: bool = False) -> DeliveryReport:
        """One pulled ``{msgGroup, mobile, reportStatus, errorCode, receiveDate, submitDate}`` record."""
        operation = "delivery report pull"
        status = self.text_field(item, "reportStatus", operation).strip()
        delivered = status.upper() == DELIVERED_STATUS
        code = (
            status if delivered else (self.text_field(item, "errorCode", operation, required=False) or status).strip()
        )
        return self.delivery_report(
            item,
            operation,
            batch="msgGroup",
            delivered=delivered,
            code=code,
            failure=f"operator code {code}",
            reported_at=item.get("receiveDate") or item.get("submitDate"),
            time_format=REPORT_TIME_FORMAT,
        )

    def inbound_from_record(self, item: Mapping[str, Any], *, pushed: bool = False) -> InboundMessage:
        """One pulled ``{mobile, smsContent, sendTime, addSerial}`` record."""
        return self.inbound_message(
            item,
            "inbound pull",
            time="sendTime",
            time_format=INBOUND_TIME_FORMAT,
            content="smsContent",
            ext_no="addSerial",
        )

    # ------------------------------------------------------------------ connection test

    def _check_connection(self) -> str:
        """Cloud MAS has no harmless authenticated call, so check what can be checked without side effects."""
        ec_name, ap_id, _ = self._credentials()
        sign = str(self.config.extra("sign", "")).strip()
        if not sign:
            raise SmsConfigurationError(
                f"connection {self.sms_conn_id!r} ({self.conn_type}) is missing the 'sign' extra (the signature code)"
            )
        try:
            status = self.request("reachability check", "GET", "/", verify=self.tls_verify).status_code
        except SmsResponseError as exc:
            if exc.status is None:
                raise
            status = exc.status  # any HTTP answer proves the endpoint is there
        return (
            f"{self.config.base_url} is reachable ({self._verify_description()}; "
            f"GET / answered HTTP {status}); ecName {ec_name!r}, apId {ap_id!r}, secretKey and "
            f"signature code {sign!r} are set. NOT checked: whether Cloud MAS accepts them, because it "
            "has no side-effect-free authenticated call (a send costs money and a report or inbound pull "
            "consumes what it returns)."
        )


def _base64_json(body: bytes) -> Any:
    """JSON inside base64, or ``_UNDECODABLE``."""
    try:
        text = base64.b64decode(b"".join(body.split()), validate=True).decode("utf-8-sig")
        return json.loads(text, parse_float=Decimal)
    except (binascii.Error, ValueError, RecursionError):
        return _UNDECODABLE


__all__ = ["CloudMasHook", "PersonalizedSendRequest"]
