"""PaaSW gateway API v2 (``paasw-v2.md``): token from appId + secret, JSON or form bodies, queue pulls."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

import requests

from airflow_provider_sms.errors import SmsConfigurationError, SmsInvalidRequestError, SmsResponseError
from airflow_provider_sms.hooks.base import PULL_OPERATIONS, SendRequest, parse_id
from airflow_provider_sms.hooks.paasw import SIGNATURE, TIME_FORMAT, PaaswHook
from airflow_provider_sms.hooks.push import VendorPush, announced_count
from airflow_provider_sms.records import DeliveryReport, InboundMessage, SendReceipt

# (json path, form path) per call; the document gives form twins for token, send, template and balance only.
PATHS: dict[str, tuple[str, str]] = {
    "token": ("/message/token", "/message/tokenApi"),
    "send": ("/message/send", "/msg/send"),
    "template": ("/message/sendTemplate", "/msg/sendTemplate"),
    "balance": ("/message/balance", "/msg/balance"),
    "reports": ("/message/deliver", "/message/deliver"),
    "inbound": ("/message/mo", "/message/mo"),
}


class PaaswV2Hook(PaaswHook):
    """Hook for the ``sms_paasw_v2`` connection: login is the appId, password the secret.

    Extras: ``format`` (``json`` or ``form``), ``product_id`` (default ``"2"``), ``sign``.
    """

    vendor = "paasw_v2"
    #: ``{count, data: [...]}`` in the pull formats (§11, §12); the document specifies no answer: the gateway's own
    push = VendorPush(vendor)
    supported_options = frozenset({"signature", "ext_no", "scheduled_at", "kind"})

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

    def _response(
        self, call: str, payload: Mapping[str, Any], operation: str, *, send: SendRequest | None = None
    ) -> requests.Response:
        form = self.body_format == "form" and call in self.use_form_for
        path = PATHS[call][1 if form else 0]
        if form:
            body = {
                k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v for k, v in payload.items()
            }
            return self.request(operation, "POST", path, data=body, send=send)
        return self.request(operation, "POST", path, json=dict(payload), send=send)

    def _reply(self, response: requests.Response, operation: str, *, quote_body: bool = True) -> Any:
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

    def _data_of(self, reply: Any, operation: str) -> Any:
        return self.field(reply, "data", operation)

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
        data = self._data_of(self._with_token(call, payload, operation, send=request), operation)
        try:
            batch_id = parse_id(self.field(data, "batchId", operation), field_name="batchId")
        except ValueError as exc:
            raise self.bad_reply(operation, str(exc)) from None
        return SendReceipt(self.vendor, batch_id, request.mobiles, self.now(), raw=data)

    def _records_in_reply(self, kind: str, response: requests.Response) -> list[Mapping[str, Any]]:
        operation = PULL_OPERATIONS[kind]
        return self._pulled(self._reply(response, operation), operation)

    def report_from_record(self, item: Mapping[str, Any], *, pushed: bool = False) -> DeliveryReport:
        """One ``{batchId, mobile, chnRptDate, chnRptCode}`` record: pulls and pushes carry the same fields."""
        operation = "delivery report push" if pushed else "delivery report pull"
        code = self.text_field(item, "chnRptCode", operation)
        return self.delivery_report(
            item,
            operation,
            batch="batchId",
            delivered=code.upper() == "DELIVRD",
            code=code,
            failure=f"operator code {code}",
            reported_at=item.get("chnRptDate"),
            time_format=TIME_FORMAT,
        )

    def inbound_from_record(self, item: Mapping[str, Any], *, pushed: bool = False) -> InboundMessage:
        """One ``{mobile, extNo, replyDate, content}`` record, pulled or pushed."""
        operation = "inbound push" if pushed else "inbound pull"
        return self.inbound_message(item, operation, time="replyDate", time_format=TIME_FORMAT, ext_no="extNo")

    def _pulled(self, reply: Mapping[str, Any], operation: str) -> list[Mapping[str, Any]]:
        """The pulled records. A reply announcing records (``count`` > 0) without ``data`` is an error, not
        empty; a ``count`` that disagrees with the records there is is a warning: the vendor has handed
        them out, so they are kept, and the log says what the reply claimed."""
        items = self.data_list(reply.get("data"), operation)
        try:
            count = announced_count(reply.get("count"))
        except ValueError as exc:
            self.log.warning("%s %s: %s; the %d records of the reply are kept", self.vendor, operation, exc, len(items))
            return items
        if count is None or count == len(items):
            return items
        if reply.get("data") is None:
            raise self.bad_reply(operation, f"the reply announces {count} records but carries no 'data'")
        self.log.warning(
            "%s %s: the reply announces %d records but carries %d; the %d records of the reply are kept",
            self.vendor,
            operation,
            count,
            len(items),
            len(items),
        )
        return items
