"""PaaSW gateway API v2 (``paasw-v2.md``): token from appId + secret, JSON or form bodies, queue pulls."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import requests

from airflow_provider_sms.errors import SmsConfigurationError, SmsInvalidRequestError, SmsResponseError, SmsVendorError
from airflow_provider_sms.hooks.base import (
    BALANCE,
    INBOUND,
    PULL_OPERATIONS,
    REPORTS,
    SEND,
    SEND_TEMPLATE,
    SendRequest,
    SmsHook,
    parse_id,
)
from airflow_provider_sms.hooks.push import VendorPush
from airflow_provider_sms.records import (
    DELIVERED,
    FAILED,
    Balance,
    DeliveryReport,
    InboundMessage,
    SendReceipt,
)

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

#: a 【signature】 anywhere in the text: the document asks that msg contain one, not that it start with it
SIGNATURE = re.compile(r"【[^【】]+】")
# (json path, form path) per call; the document gives form twins for token, send, template and balance only.
PATHS: dict[str, tuple[str, str]] = {
    "token": ("/message/token", "/message/tokenApi"),
    "send": ("/message/send", "/msg/send"),
    "template": ("/message/sendTemplate", "/msg/sendTemplate"),
    "balance": ("/message/balance", "/msg/balance"),
    "reports": ("/message/deliver", "/message/deliver"),
    "inbound": ("/message/mo", "/message/mo"),
}


class PaaswV2Hook(SmsHook):
    """Hook for the ``sms_paasw_v2`` connection: login is the appId, password the secret.

    Extras: ``format`` (``json`` or ``form``), ``product_id`` (default ``"2"``), ``sign``.
    The document lists no error codes, so any error reply on a cached token triggers one refresh.
    """

    vendor = "paasw_v2"
    #: ``{count, data: [...]}`` in the pull formats (§11, §12); the document specifies no answer: the gateway's own
    push = VendorPush(vendor)
    max_numbers_per_request = 1000
    features = frozenset({SEND, SEND_TEMPLATE, REPORTS, INBOUND, BALANCE})
    supported_options = frozenset({"signature", "ext_no", "scheduled_at", "kind"})
    report_mode = "queue"

    use_form_for: ClassVar[frozenset[str]] = frozenset({"token", "send", "template", "balance"})

    @property
    def body_format(self) -> str:
        value = str(self.config.extra("format", "json")).lower()
        if value not in ("json", "form"):
            raise SmsConfigurationError(
                f"connection {self.sms_conn_id!r}: extra 'format' must be json or form, got {value!r}"
            )
        return value

    # ------------------------------------------------------------------ wire

    def _post(self, call: str, payload: Mapping[str, Any], operation: str, send: SendRequest | None = None) -> Any:
        # a token reply's body holds the token: never quote it in an error
        return self._data(self._response(call, payload, operation, send), operation, quote_body=call != "token")

    def _response(
        self, call: str, payload: Mapping[str, Any], operation: str, send: SendRequest | None = None
    ) -> requests.Response:
        form = self.body_format == "form" and call in self.use_form_for
        path = PATHS[call][1 if form else 0]
        if form:
            body = {
                k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v for k, v in payload.items()
            }
            return self.request(operation, "POST", path, data=body, send=send)
        return self.request(operation, "POST", path, json=dict(payload), send=send)

    def _data(self, response: requests.Response, operation: str, *, quote_body: bool = True) -> Any:
        reply = self.parse_json(response, operation) if quote_body else self._parse_quietly(response, operation)
        code = self.field(reply, "code", operation, response if quote_body else None)
        if str(code) != "0":
            raise self.vendor_error(code, reply.get("message"), {}, operation)
        return reply

    def _parse_quietly(self, response: requests.Response, operation: str) -> Any:
        try:
            return self.parse_json(response, operation)
        except SmsResponseError as exc:
            raise SmsResponseError(self.vendor, operation, exc.problem, exc.status) from None

    def _fetch_token(self) -> tuple[str, float]:
        app_id, secret = self.require_login_and_password("App ID (login)", "secret (password)")
        reply = self._post("token", {"appId": app_id, "secret": secret}, "token request")
        data = self.field(reply, "data", "token request")
        token = self.field(data, "token", "token request")
        if not isinstance(token, str) or not token.strip():
            raise self.bad_reply("token request", f"'token' should be a non-empty string, got {type(token).__name__}")
        expires_in = data.get("expires_in") or 7200
        try:
            return token, float(expires_in)
        except (TypeError, ValueError, ArithmeticError):
            raise self.bad_reply("token request", f"'expires_in' {expires_in!r} is not a number of seconds") from None

    def _with_token(
        self, call: str, payload: Mapping[str, Any], operation: str, send: SendRequest | None = None
    ) -> Any:
        return self.with_token(
            lambda token: self._post(call, {"token": token, **payload}, operation, send),
            is_token_error=lambda exc: True,
        )

    # ------------------------------------------------------------------ interface

    def _validate_request(self, request: SendRequest) -> None:
        if not request.template_id and not SIGNATURE.search(
            self.signed_content(request.content or "", request.options.signature)
        ):
            raise SmsInvalidRequestError(
                f"{self.vendor}: the text must contain a 【signature】 (the document: msg 包含【XX】签名); "
                "pass signature=... or set the connection's sign extra"
            )
        if request.template_id and request.params is not None and not isinstance(request.params, Mapping):
            raise SmsInvalidRequestError(
                f"{self.vendor}: template params must be a mapping of variable names to values, "
                f"got {type(request.params).__name__}"
            )

    def _submit(self, request: SendRequest) -> SendReceipt:
        options = request.options
        payload: dict[str, Any] = {"mobile": ",".join(request.mobiles)}
        if request.template_id:
            call, operation = "template", f"{request.description}"
            payload["templateId"] = str(request.template_id)
            payload["params"] = dict(request.params or {})
        else:
            call, operation = "send", f"{request.description}"
            payload["msg"] = self.signed_content(request.content or "", options.signature)
        payload["productId"] = options.kind or self.kind_code(str(self.config.extra("product_id", "2")))
        if options.ext_no:
            payload["extNo"] = str(options.ext_no)
        payload["time"] = self.format_vendor_time(options.scheduled_at, TIME_FORMAT) if options.scheduled_at else ""
        reply = self._with_token(call, payload, operation, send=request)
        data = self.field(reply, "data", operation)
        try:
            batch_id = parse_id(self.field(data, "batchId", operation), field_name="batchId")
        except ValueError as exc:
            raise self.bad_reply(operation, str(exc)) from None
        return SendReceipt(self.vendor, batch_id, request.mobiles, self.now(), raw=data)

    def _pull_records(self, kind: str) -> list[Mapping[str, Any]]:
        return self.with_token(
            lambda token: self._records_in_reply(kind, self._response(kind, {"token": token}, PULL_OPERATIONS[kind])),
            is_token_error=lambda exc: True,
        )

    def _records_in_reply(self, kind: str, response: requests.Response) -> list[Mapping[str, Any]]:
        operation = PULL_OPERATIONS[kind]
        return self._pulled(self._data(response, operation), operation)

    def report_from_record(self, item: Mapping[str, Any], *, pushed: bool = False) -> DeliveryReport:
        """One ``{batchId, mobile, chnRptDate, chnRptCode}`` record: pulls and pushes carry the same fields."""
        operation = "delivery report push" if pushed else "delivery report pull"
        code = self.text_field(item, "chnRptCode", operation)
        delivered = code.upper() == "DELIVRD"
        return DeliveryReport(
            vendor=self.vendor,
            batch_id=parse_id(self.field(item, "batchId", operation), field_name="batchId"),
            mobile=self.text_field(item, "mobile", operation),
            status=DELIVERED if delivered else FAILED,
            code=code,
            description="delivered" if delivered else f"operator code {code}",
            reported_at=self.vendor_time(item.get("chnRptDate"), [TIME_FORMAT]),
            raw=item,
        )

    def inbound_from_record(self, item: Mapping[str, Any], *, pushed: bool = False) -> InboundMessage:
        """One ``{mobile, extNo, replyDate, content}`` record, pulled or pushed."""
        operation = "inbound push" if pushed else "inbound pull"
        return InboundMessage(
            vendor=self.vendor,
            mobile=self.text_field(item, "mobile", operation),
            content=self.text_field(item, "content", operation),
            received_at=self.vendor_time(item.get("replyDate"), [TIME_FORMAT]),
            ext_no=self.text_field(item, "extNo", operation, required=False),
            raw=item,
        )

    def _pulled(self, reply: Mapping[str, Any], operation: str) -> list[Mapping[str, Any]]:
        """The pulled records; a reply announcing records (``count`` > 0) without ``data`` is an error, not empty."""
        items = self.data_list(reply.get("data"), operation)
        count = reply.get("count")
        if not items and isinstance(count, int) and not isinstance(count, bool) and count > 0:
            raise self.bad_reply(operation, f"the reply announces {count} records but carries no 'data'")
        return items

    def _get_balance(self) -> Balance:
        operation = "balance query"
        reply = self._with_token("balance", {}, operation)
        data = self.field(reply, "data", operation)
        amount = self.balance_amount(self.field(data, "balance", operation), operation)
        return Balance(self.vendor, amount, "", raw=data)

    def _check_connection(self) -> str:
        try:
            self._fetch_token()
        except SmsVendorError as exc:
            raise SmsVendorError(
                exc.vendor, exc.code, exc.vendor_message, "appId or secret rejected", exc.operation
            ) from None
        return f"token issued for appId {self.config.login} at {self.config.base_url}"
