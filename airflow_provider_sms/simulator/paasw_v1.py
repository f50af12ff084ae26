"""Simulated PaaSW gateway v1 (``paasw-v1.md``).

Codes are strings, as the document's ``"code": "10000"`` shows. The document lists no error codes
("待更新"), so the simulator uses these (the hook keys on none of them):
``10001`` appId/secret wrong, ``10002`` token invalid or expired, ``10003`` parameter error
(missing, too long or malformed field, wrong content type), ``10004`` balance insufficient.

Choices where the document is silent:

* Sends take form bodies only (``application/x-www-form-urlencoded``); the GET calls read the query string.
* ``kind``: an account whose ``extra`` has ``kinds`` with several values (``{"kinds": "1,2,3"}``) must send
  one of them; a single-kind account (the default) may leave it out, and a given kind must still be valid.
* The report and inbound pulls answer ``{"code": "10000", "message": ..., "data": [...]}`` (the hook also
  takes a bare list). Their ``sign`` is checked (≤ 20 characters, no 【】) but does not filter the queue.
* ``/sms/send`` requires ``content`` to contain a 【signature】 anywhere, as its table says (包含【XX】签名):
  a content without one is refused with ``10003``; the platform adds nothing. The template table says
  only "发送内容", so a template content without one is billed as ``【sign】content``. The signature
  counts towards the billed length either way.
* Push: reports and inbound messages are POSTed as a bare JSON list in the document's push formats
  (the same records as the pulls), up to 1000 a POST. A push counts as received when the answer is
  HTTP 200 with ``code`` ``10000`` (string, as the inbound answer shows, or the report answer's number).
  The document says nothing of re-pushes, so none is made.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow_provider_sms.numbers import message_parts, normalize_domestic
from airflow_provider_sms.simulator.core import (
    Handler,
    Inbound,
    Message,
    PushPayload,
    Refusal,
    SimResponse,
    VendorProtocol,
    batches,
    checked_mobiles,
    form_fields,
    json_push,
    json_reply_code,
    media_type_check,
    query_fields,
    vendor_time,
)

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SUCCESS = "10000"
BAD_CREDENTIALS, BAD_TOKEN, BAD_PARAMETER, NO_BALANCE = "10001", "10002", "10003", "10004"

MAX_MOBILES = 1000
MAX_MOBILES_CHARS = 1500
MAX_APP_ID, MAX_SECRET = 10, 30
MAX_SIGN, MAX_CONTENT, MAX_TEMPLATE_ID, MAX_PARAM_JSON = 20, 1000, 20, 100
KINDS = ("1", "2", "3")
#: report code for an undelivered message: "4" (failed) in the document's list
FAILED_CODE = "4"
PULL_LIMIT = 1000
#: content 包含【XX】签名: a signature anywhere in the text
SIGNATURE = re.compile(r"【[^【】]+】")


def _reply(code: str = SUCCESS, message: str = "操作成功", **extra: Any) -> SimResponse:
    return SimResponse.json({"code": code, "message": message, **extra})


def _error(code: str, message: str) -> SimResponse:
    return _reply(code, message)


def _bad_parameter(message: str) -> SimResponse:
    return _error(BAD_PARAMETER, message)


def _param(message: str) -> Refusal:
    return Refusal(_bad_parameter(message))


_FORM_ONLY = media_type_check(
    "application/x-www-form-urlencoded", lambda media: _bad_parameter(f"须为表单提交, Content-Type为{media!r}")
)


def _report_record(message: Message) -> dict[str, Any]:
    return {
        "phone_number": message.mobile,
        "send_time": vendor_time(message.submitted_at, TIME_FORMAT),
        "report_time": vendor_time(message.report_at, TIME_FORMAT),
        "success": message.delivered,
        "code": SUCCESS if message.delivered else FAILED_CODE,
        "message": "用户接收成功" if message.delivered else "失败",
        "sms_size": str(message.parts),
        "biz_id": message.batch_id,
    }


def _inbound_record(message: Inbound, sign: str) -> dict[str, Any]:
    return {
        "phone_number": message.mobile,
        "send_time": vendor_time(message.received_at, TIME_FORMAT),
        "content": message.content,
        "sign": message.sign or sign,
        "sequence_id": message.sequence_id,
    }


class PaaswV1Protocol(VendorProtocol):
    """Token by GET query, form sends, GET pulls; every field's documented length enforced."""

    vendor = "paasw_v1"

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("GET", "/api/token"): self._query(self.token),
            ("POST", "/sms/send"): self._form(self.send),
            ("POST", "/sms/sendTemplate"): self._form(self.send_template),
            ("GET", "/sms/deliver"): self._query(self.deliver),
            ("GET", "/sms/smsUp"): self._query(self.sms_up),
            ("GET", "/sms/balance"): self._query(self.balance),
        }

    def _query(self, endpoint: Callable[[Mapping[str, str]], SimResponse]) -> Handler:
        return self.route(endpoint, query_fields, _bad_parameter)

    def _form(self, endpoint: Callable[[Mapping[str, str]], SimResponse]) -> Handler:
        return self.route(endpoint, form_fields, _bad_parameter, _FORM_ONLY)

    # ------------------------------------------------------------------ field checks

    def _text(self, body: Mapping[str, str], name: str, max_chars: int, *, required: bool = True) -> str:
        value = str(body.get(name) or "")
        if required and not value.strip():
            raise _param(f"缺少参数 {name}")
        if len(value) > max_chars:
            raise _param(f"{name}长度超过{max_chars}")
        return value

    def _require_token(self, body: Mapping[str, str]) -> None:
        if not self.gateway.token_valid(self.vendor, body.get("token")):
            raise Refusal(_error(BAD_TOKEN, "token无效或已过期"))

    def _sign(self, body: Mapping[str, str], *, required: bool) -> str:
        sign = self._text(body, "sign", MAX_SIGN, required=required)
        if "【" in sign or "】" in sign:
            raise _param("sign不包含【】")
        return sign

    def _mobiles(self, body: Mapping[str, str]) -> list[str]:
        text = self._text(body, "phoneNumbers", MAX_MOBILES_CHARS)
        return checked_mobiles(
            text,
            MAX_MOBILES,
            normalize_domestic,
            lambda _: _bad_parameter(f"手机号最多{MAX_MOBILES}个"),
            lambda bad: _bad_parameter(f"手机号格式错误: {bad}"),
        )

    def _kind(self, body: Mapping[str, str]) -> None:
        configured = [k.strip() for k in str(self.account.extra.get("kinds") or "").split(",") if k.strip()]
        kind = str(body.get("kind") or "")
        if len(configured) > 1 and not kind:
            raise _param("账户支持多种短信类型, kind必传")
        if kind and kind not in (configured or KINDS):
            raise _param(f"kind须为{'、'.join(configured or KINDS)}之一")

    # ------------------------------------------------------------------ endpoints

    def token(self, query: Mapping[str, str]) -> SimResponse:
        app_id = self._text(query, "appId", MAX_APP_ID)
        secret = self._text(query, "secret", MAX_SECRET)
        if app_id != self.account.login or secret != self.account.secret:
            return _error(BAD_CREDENTIALS, "appId或secret错误")
        token, expires_in = self.gateway.issue_token(self.vendor)
        return _reply(token=token, expires_in=expires_in)

    def _accept(self, mobiles: list[str], text: str) -> SimResponse:
        """Bill and queue ``text`` (signature included) for each number."""
        if self.gateway.balances[self.vendor] < message_parts(text) * len(mobiles):
            return _error(NO_BALANCE, "余额不足")
        biz_id = self.gateway.next_batch_id()
        self.gateway.accept(self.vendor, biz_id, ((m, text) for m in mobiles))
        return _reply(bizId=biz_id)

    def send(self, body: Mapping[str, str]) -> SimResponse:
        self._require_token(body)
        mobiles = self._mobiles(body)
        self._sign(body, required=True)
        content = self._text(body, "content", MAX_CONTENT)
        self._kind(body)
        if not SIGNATURE.search(content):
            raise _param("content须包含【签名】")
        return self._accept(mobiles, content)

    def send_template(self, body: Mapping[str, str]) -> SimResponse:
        self._require_token(body)
        mobiles = self._mobiles(body)
        self._text(body, "templateId", MAX_TEMPLATE_ID)
        param_json = self._text(body, "paramJson", MAX_PARAM_JSON)
        try:
            params = json.loads(param_json)
        except ValueError:
            raise _param("paramJson须为JSON") from None
        if not isinstance(params, (list, dict)):
            raise _param("paramJson须为JSON数组或对象")
        sign = self._sign(body, required=True)
        content = self._text(body, "content", MAX_CONTENT)
        return self._accept(mobiles, content if SIGNATURE.search(content) else f"【{sign}】{content}")

    def deliver(self, query: Mapping[str, str]) -> SimResponse:
        self._require_token(query)
        self._sign(query, required=False)
        data = [_report_record(m) for m in self.gateway.take_reports(self.vendor, limit=PULL_LIMIT)]
        return _reply(message="请求成功", data=data)

    def sms_up(self, query: Mapping[str, str]) -> SimResponse:
        self._require_token(query)
        sign = self._sign(query, required=True)
        data = [_inbound_record(m, sign) for m in self.gateway.take_inbound(self.vendor, limit=PULL_LIMIT)]
        return _reply(message="请求成功", data=data)

    def balance(self, query: Mapping[str, str]) -> SimResponse:
        self._require_token(query)
        return _reply(message="请求成功", balance=self.gateway.balances[self.vendor])

    # ------------------------------------------------------------------ push

    def push_reports(self, messages: Sequence[Message]) -> list[PushPayload]:
        return [json_push([_report_record(m) for m in chunk], len(chunk)) for chunk in batches(messages, PULL_LIMIT)]

    def push_inbound(self, messages: Sequence[Inbound]) -> list[PushPayload]:
        sign = str(self.account.extra.get("sign") or "")
        return [
            json_push([_inbound_record(m, sign) for m in chunk], len(chunk)) for chunk in batches(messages, PULL_LIMIT)
        ]

    def push_acknowledged(self, status: int, body: bytes) -> bool:
        return status == 200 and str(json_reply_code(body)) == SUCCESS
