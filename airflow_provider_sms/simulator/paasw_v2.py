"""Simulated PaaSW gateway v2 (``paasw-v2.md``).

The document lists no error codes, so the simulator uses these (the hook keys on none of them):
``40001`` appId/secret wrong, ``40002`` token invalid or expired, ``40003`` parameter error,
``40004`` balance insufficient.

Push (§11, §12): reports and inbound messages are POSTed as ``{count, data: [...]}`` in the pull
formats, up to 1000 records a POST. The document specifies no answer and no re-push, so any HTTP 200
counts as received and nothing is pushed twice.
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
    SimResponse,
    VendorProtocol,
    batches,
    form_fields,
    future_time,
    json_object,
    json_push,
    media_type_check,
    vendor_time,
)

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_MOBILES = 1000
PULL_LIMIT = 1000
BAD_CREDENTIALS, BAD_TOKEN, BAD_PARAMETER, NO_BALANCE = 40001, 40002, 40003, 40004


def _reply(data: Any = None, code: int = 0, message: str = "请求成功", **extra: Any) -> SimResponse:
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    if data is not None:
        body["data"] = data
    return SimResponse.json(body)


def _error(code: int, message: str) -> SimResponse:
    return _reply(None, code, message)


def _bad_parameter(problem: str) -> SimResponse:
    return _error(BAD_PARAMETER, problem)


_JSON_ONLY = media_type_check(
    "application/json", lambda media: _bad_parameter(f"Content-Type must be application/json, got {media!r}")
)
_FORM_ONLY = media_type_check(
    "application/x-www-form-urlencoded", lambda media: _bad_parameter(f"form body expected, got {media!r}")
)
#: an endpoint: the request's body, and whether it came as a form
Endpoint = Callable[[Mapping[str, Any], bool], SimResponse]


def _report_record(message: Message) -> dict[str, Any]:
    return {
        "mobile": message.mobile,
        "chnRptDate": vendor_time(message.report_at, TIME_FORMAT),
        "chnRptCode": "DELIVRD" if message.delivered else "DB:0141",
        "batchId": message.batch_id,
    }


def _inbound_record(message: Inbound) -> dict[str, Any]:
    return {
        "mobile": message.mobile,
        "extNo": message.ext_no,
        "content": message.content,
        "replyDate": vendor_time(message.received_at, TIME_FORMAT),
    }


#: msg 包含【XX】签名: a signature anywhere in the text
SIGNATURE = re.compile(r"【[^【】]+】")


class PaaswV2Protocol(VendorProtocol):
    """Token first, then JSON calls under ``/message/*`` or their form twins under ``/msg/*``."""

    vendor = "paasw_v2"

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("POST", "/message/token"): self._json(self.token),
            ("POST", "/message/tokenApi"): self._form(self.token),
            ("POST", "/message/send"): self._json(self.send),
            ("POST", "/msg/send"): self._form(self.send),
            ("POST", "/message/sendTemplate"): self._json(self.send_template),
            ("POST", "/msg/sendTemplate"): self._form(self.send_template),
            ("POST", "/message/deliver"): self._json(self.deliver),
            ("POST", "/message/mo"): self._json(self.mo),
            ("POST", "/message/balance"): self._json(self.balance),
            ("POST", "/msg/balance"): self._form(self.balance),
        }

    # The JSON endpoints take only JSON, the /msg/* twins only form bodies, as the document splits them.
    def _json(self, endpoint: Endpoint) -> Handler:
        return self.route(lambda body: endpoint(body, False), json_object, _bad_parameter, _JSON_ONLY)

    def _form(self, endpoint: Endpoint) -> Handler:
        return self.route(lambda body: endpoint(body, True), form_fields, _bad_parameter, _FORM_ONLY)

    def _token_ok(self, body: Mapping[str, Any]) -> bool:
        return self.gateway.token_valid(self.vendor, body.get("token"))

    # ------------------------------------------------------------------ endpoints

    def token(self, body: Mapping[str, Any], form: bool) -> SimResponse:
        if body.get("appId") != self.account.login or body.get("secret") != self.account.secret:
            return _error(BAD_CREDENTIALS, "appId或secret错误")
        token, expires_in = self.gateway.issue_token(self.vendor)
        return _reply({"expires_in": expires_in, "token": token})

    def _check_common(self, body: Mapping[str, Any]) -> tuple[list[str] | None, SimResponse | None]:
        if not self._token_ok(body):
            return None, _error(BAD_TOKEN, "token无效或已过期")
        for name in ("mobile", "productId"):
            if not str(body.get(name) or "").strip():
                return None, _error(BAD_PARAMETER, f"缺少参数 {name}")
        mobiles = str(body["mobile"]).split(",")
        if len(mobiles) > MAX_MOBILES:
            return None, _error(BAD_PARAMETER, f"手机号最多{MAX_MOBILES}个")
        bad = [m for m in mobiles if normalize_domestic(m) != m]
        if bad:
            return None, _error(BAD_PARAMETER, f"手机号格式错误: {','.join(bad[:5])}")
        if str(body["productId"]) not in ("1", "2", "3"):
            return None, _error(BAD_PARAMETER, "productId必须为1、2或3")
        ext_no = str(body.get("extNo") or "")
        if ext_no and not ext_no.isdigit():
            return None, _error(BAD_PARAMETER, "extNo必须为数字")
        send_time = str(body.get("time") or "")
        if send_time and not future_time(send_time, TIME_FORMAT):
            return None, _error(BAD_PARAMETER, "time格式应为yyyy-MM-dd HH:mm:ss且为将来时间")
        return mobiles, None

    def _accept(self, mobiles: list[str], text: str, ext_no: str) -> SimResponse:
        cost = len(mobiles) * message_parts(text)
        with self.gateway.lock:  # check and charge at once: concurrent sends must not overdraw
            if self.gateway.balances[self.vendor] < cost:
                return _error(NO_BALANCE, "余额不足")
            batch_id = self.gateway.next_batch_id()
            self.gateway.accept(self.vendor, batch_id, ((m, text) for m in mobiles), ext_no)
        # batchId is a JSON number in the send reply, and wider than 64 bits: keep it a number on the wire.
        return _reply({"batchId": int(batch_id)})

    def send(self, body: Mapping[str, Any], form: bool) -> SimResponse:
        mobiles, error = self._check_common(body)
        if error:
            return error
        assert mobiles is not None
        text = str(body.get("msg") or "")
        if not text:
            return _error(BAD_PARAMETER, "缺少参数 msg")
        if not SIGNATURE.search(text):  # 包含: anywhere in the text
            return _error(BAD_PARAMETER, "msg须包含【签名】")
        return self._accept(mobiles, text, str(body.get("extNo") or ""))

    def send_template(self, body: Mapping[str, Any], form: bool) -> SimResponse:
        mobiles, error = self._check_common(body)
        if error:
            return error
        assert mobiles is not None
        if not str(body.get("templateId") or "").strip():
            return _error(BAD_PARAMETER, "缺少参数 templateId")
        params = body.get("params")
        if form and isinstance(params, str):
            try:
                params = json.loads(params)
            except ValueError:
                return _error(BAD_PARAMETER, "params须为JSON")
        if not isinstance(params, Mapping):
            return _error(BAD_PARAMETER, "params须为JSON对象")
        text = f"【模板{body['templateId']}】" + ",".join(f"{k}={v}" for k, v in params.items())
        return self._accept(mobiles, text, str(body.get("extNo") or ""))

    def deliver(self, body: Mapping[str, Any], form: bool) -> SimResponse:
        if not self._token_ok(body):
            return _error(BAD_TOKEN, "token无效或已过期")
        data = [_report_record(m) for m in self.gateway.take_reports(self.vendor, limit=PULL_LIMIT)]
        return _reply(data, count=len(data))

    def mo(self, body: Mapping[str, Any], form: bool) -> SimResponse:
        if not self._token_ok(body):
            return _error(BAD_TOKEN, "token无效或已过期")
        data = [_inbound_record(m) for m in self.gateway.take_inbound(self.vendor, limit=PULL_LIMIT)]
        return _reply(data, count=len(data))

    def balance(self, body: Mapping[str, Any], form: bool) -> SimResponse:
        if not self._token_ok(body):
            return _error(BAD_TOKEN, "token无效或已过期")
        return _reply({"balance": self.gateway.balances[self.vendor]})

    # ------------------------------------------------------------------ push

    def push_reports(self, messages: Sequence[Message]) -> list[PushPayload]:
        return [
            json_push({"count": len(chunk), "data": [_report_record(m) for m in chunk]}, len(chunk))
            for chunk in batches(messages, PULL_LIMIT)
        ]

    def push_inbound(self, messages: Sequence[Inbound]) -> list[PushPayload]:
        return [
            json_push({"count": len(chunk), "data": [_inbound_record(m) for m in chunk]}, len(chunk))
            for chunk in batches(messages, PULL_LIMIT)
        ]
