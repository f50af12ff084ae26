"""PaaSW gateway API v1 (``paasw-v1.md``): token by GET, form sends, GET pulls, ``sign`` apart from content.

Readings taken where the document is unclear (see the digest in ``vendor-specs/README.md``):

* The send table says ``content`` "includes the 【XX】 signature" (包含【XX】签名) while ``sign`` carries
  it without brackets. The vendor's own SDK samples (``send.sh``, ``sendTemplate.sh`` for
  openapi.gateway.paasw.com) do both: ``sign=NFC`` and ``content=【NFC】...``, for templates too ("多签名
  内容前置添加提交"). So ``content`` goes out as ``【sign】text`` unless the text already holds a
  【signature】 somewhere, and ``sign`` is always sent as well.
* The report pull reply is not shown and the inbound one is a bare list; both are accepted as a bare
  list or as the list under ``data`` of a ``{"code": "10000", ...}`` envelope.
* The report pull's ``sign`` is optional and would narrow a destructive queue pull to one signature,
  so it is not sent: every pending report of the account is fetched. The inbound pull requires it:
  the connection's ``sign`` goes there.
* No error codes are documented: any error reply on a cached token triggers one token refresh.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import requests

from airflow_provider_sms.errors import SmsConfigurationError, SmsInvalidRequestError
from airflow_provider_sms.hooks.base import INBOUND, PULL_OPERATIONS, SendRequest, parse_id
from airflow_provider_sms.hooks.paasw import SIGNATURE, TIME_FORMAT, PaaswHook
from airflow_provider_sms.hooks.push import Answer, VendorPush
from airflow_provider_sms.records import DeliveryReport, InboundMessage, SendReceipt

SUCCESS = "10000"

PATHS: dict[str, str] = {
    "token": "/api/token",
    "send": "/sms/send",
    "template": "/sms/sendTemplate",
    "reports": "/sms/deliver",
    "inbound": "/sms/smsUp",
    "balance": "/sms/balance",
}

# Field caps from the document's "最大长度" column.
MAX_SIGN_CHARS = 20
MAX_CONTENT_CHARS = 1000
MAX_TEMPLATE_ID_CHARS = 20
MAX_PARAM_JSON_CHARS = 100

#: Report ``code`` meanings, from the push format's comment.
REPORT_CODES: dict[str, str] = {
    SUCCESS: "delivered",
    "1": "submit failed",
    "4": "delivery failed",
    "5": "blocked word",
    "6": "rejected by content review",
    "7": "black/white list",
    "8": "rate limited (too frequent)",
    "9": "unknown",
}


class PaaswV1Push(VendorPush):
    """A JSON list of records; the answer is ``{"code": "10000", "msg": ...}`` as the inbound push shows."""

    def ok(self) -> Answer:
        return Answer(200, {"code": SUCCESS, "msg": "请求成功"})

    def refused(self, status: int, problem: str) -> Answer:
        return Answer(status, {"code": str(status), "msg": problem})

    def not_stored(self) -> Answer:
        return Answer(503, {"code": "503", "msg": "not stored; push again later"})


class PaaswV1Hook(PaaswHook):
    """Hook for the ``sms_paasw_v1`` connection: login is the appId, password the secret.

    Extras: ``sign`` (the signature, required by every send and by the inbound pull; 【】 are
    stripped; at most 20 characters) and ``kind`` (``1``/``2``/``3`` or a kind name; only for
    accounts set up with several kinds; the template table has no kind, so templates never send it).
    """

    vendor = "paasw_v1"
    push = PaaswV1Push(vendor)
    max_mobiles_chars = 1500
    supported_options = frozenset({"signature", "kind"})

    # ------------------------------------------------------------------ wire

    def _response(
        self, call: str, payload: Mapping[str, Any], operation: str, *, send: SendRequest | None = None
    ) -> requests.Response:
        """POST form for sends, GET query otherwise."""
        if call in ("send", "template"):
            return self.request(operation, "POST", PATHS[call], data=dict(payload), send=send)
        return self.request(operation, "GET", PATHS[call], params=dict(payload), send=send)

    def _reply(
        self, response: requests.Response, operation: str, *, allow_list: bool = False, quote_body: bool = True
    ) -> Any:
        """The reply as JSON; a non-``10000`` code raises ``SmsVendorError`` (``allow_list``: a bare list is data)."""
        reply = self.parse_json(response, operation)
        if allow_list and isinstance(reply, list):
            return reply
        shown: requests.Response | None = response if quote_body else None
        code = self.field(reply, "code", operation, shown)
        if str(code) != SUCCESS:
            raise self.vendor_error(code, reply.get("message"), {}, operation)
        return reply

    def _pull_payload(self, kind: str) -> dict[str, str]:
        """The inbound pull requires ``sign``; the report pull's would narrow a destructive pull: not sent."""
        return {"sign": self._sign(None)} if kind == INBOUND else {}

    # ------------------------------------------------------------------ request building

    def _sign(self, signature: str | None) -> str:
        """The ``sign`` field: the per-send signature or the connection's, without 【】, ≤ 20 chars."""
        from_send = signature not in (None, "")
        error = SmsInvalidRequestError if from_send else SmsConfigurationError
        raw = signature if from_send else self.config.extra("sign")
        if raw in (None, ""):
            raise SmsConfigurationError(
                f"{self.vendor}: a signature is required: set the 'sign' extra of connection "
                f"{self.sms_conn_id!r} or pass signature="
            )
        sign = str(raw).strip().strip("【】").strip()
        if not sign or "【" in sign or "】" in sign:
            raise error(f"{self.vendor}: signature {raw!r} must be one non-empty name, with or without 【】")
        if len(sign) > MAX_SIGN_CHARS:
            raise error(
                f"{self.vendor}: signature {sign!r} is {len(sign)} characters; the sign field takes at most "
                f"{MAX_SIGN_CHARS}"
            )
        return sign

    def _kind(self, request: SendRequest) -> str | None:
        """``kind`` from the send, else the connection's extra; absent for single-kind accounts."""
        if request.options.kind:
            return request.options.kind
        extra = self.config.extra("kind")
        return self.kind_code(str(extra)) if extra is not None else None

    def _param_json(self, params: Any) -> str:
        """Template parameters as the ``paramJson`` string: compact JSON of a list or object, ≤ 100 chars."""
        if params is None:
            params = []
        if not isinstance(params, (Mapping, list, tuple)):
            raise SmsInvalidRequestError(
                f"{self.vendor}: template params must be a list or a mapping, got {type(params).__name__}"
            )
        try:
            text = json.dumps(
                dict(params) if isinstance(params, Mapping) else list(params),
                ensure_ascii=False,
                separators=(",", ":"),
            )
        except (TypeError, ValueError) as exc:
            raise SmsInvalidRequestError(f"{self.vendor}: template params are not JSON-serialisable: {exc}") from None
        if len(text) > MAX_PARAM_JSON_CHARS:
            raise SmsInvalidRequestError(
                f"{self.vendor}: template params are {len(text)} characters as JSON; paramJson takes at most "
                f"{MAX_PARAM_JSON_CHARS}"
            )
        return text

    def _content(self, request: SendRequest, sign: str) -> str:
        """The ``content`` field, ``【sign】`` first unless the text already has a 【signature】 (the document's
        包含【XX】签名, as the vendor's SDK sends it); a template without explicit content sends the
        ``paramJson`` text. The 1000-character cap counts the signature, which travels in the field."""
        if request.content is not None and request.content.strip():
            content = request.content
        elif request.template_id:
            content = self._param_json(request.params)
        else:
            raise SmsInvalidRequestError(f"{self.vendor}: message content is empty")
        if not SIGNATURE.search(content):
            content = f"【{sign}】{content}"
        if len(content) > MAX_CONTENT_CHARS:
            raise SmsInvalidRequestError(
                f"{self.vendor}: content is {len(content)} characters; the vendor takes at most {MAX_CONTENT_CHARS}"
            )
        return content

    def _payload(self, request: SendRequest) -> dict[str, str]:
        sign = self._sign(request.options.signature)
        payload = {"phoneNumbers": ",".join(request.mobiles), "sign": sign}
        if request.template_id:
            template_id = str(request.template_id).strip()
            if len(template_id) > MAX_TEMPLATE_ID_CHARS:
                raise SmsInvalidRequestError(
                    f"{self.vendor}: template id {template_id!r} is {len(template_id)} characters; "
                    f"templateId takes at most {MAX_TEMPLATE_ID_CHARS}"
                )
            if request.options.kind:
                raise SmsInvalidRequestError(
                    f"{self.vendor}: the template send has no kind field (the template sets it); drop kind="
                )
            payload["templateId"] = template_id
            payload["paramJson"] = self._param_json(request.params)
            payload["content"] = self._content(request, sign)
        else:
            payload["content"] = self._content(request, sign)
            kind = self._kind(request)
            if kind is not None:
                payload["kind"] = kind
        return payload

    # ------------------------------------------------------------------ interface

    def send_template(
        self,
        mobiles: str | Iterable[str],
        template_id: str,
        params: Any = None,
        *,
        content: str | None = None,
        **options: Any,
    ) -> list[SendReceipt]:
        """Send an approved template; ``params`` (a list or mapping) goes out as the ``paramJson`` string.

        The document marks ``content`` required for template sends although the template defines the
        text. Pass ``content`` to choose it (e.g. the rendered text); without it the ``paramJson`` text
        is sent, which is never empty and says exactly what the template is filled with. Either way it
        goes out ``【sign】`` first unless it has a 【signature】, as the vendor's SDK sends it.
        """
        return list(self.iter_send(self.plan_send(mobiles, content, template_id=template_id, params=params, **options)))

    def _validate_request(self, request: SendRequest) -> None:
        self._payload(request)

    def _submit(self, request: SendRequest) -> SendReceipt:
        operation = request.description
        call = "template" if request.template_id else "send"
        reply = self._with_token(call, self._payload(request), operation, send=request)
        try:
            batch_id = parse_id(self.field(reply, "bizId", operation), field_name="bizId")
        except ValueError as exc:
            raise self.bad_reply(operation, str(exc)) from None
        return SendReceipt(self.vendor, batch_id, request.mobiles, self.now(), raw=reply)

    def _records_in_reply(self, kind: str, response: requests.Response) -> list[Mapping[str, Any]]:
        operation = PULL_OPERATIONS[kind]
        reply = self._reply(response, operation, allow_list=True)
        return self.data_list(reply if isinstance(reply, list) else reply.get("data"), operation)

    def report_from_record(self, item: Mapping[str, Any], *, pushed: bool = False) -> DeliveryReport:
        """One ``{phone_number, report_time, code, message, biz_id, ...}`` record: the document's push format,
        which the pull is read with too."""
        operation = "delivery report push" if pushed else "delivery report pull"
        code = self.text_field(item, "code", operation)
        meaning = REPORT_CODES.get(code, f"undocumented code {code}")
        message = self.text_field(item, "message", operation, required=False)
        return self.delivery_report(
            item,
            operation,
            batch="biz_id",
            mobile="phone_number",
            delivered=code == SUCCESS,
            code=code,
            failure=f"{meaning} (vendor: {message})" if message else meaning,
            reported_at=item.get("report_time"),
            time_format=TIME_FORMAT,
        )

    def inbound_from_record(self, item: Mapping[str, Any], *, pushed: bool = False) -> InboundMessage:
        """One ``{phone_number, send_time, content, sign, sequence_id}`` record, pulled or pushed."""
        operation = "inbound push" if pushed else "inbound pull"
        return self.inbound_message(item, operation, time="send_time", time_format=TIME_FORMAT, mobile="phone_number")
