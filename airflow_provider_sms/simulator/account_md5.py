"""Simulated account + MD5 password gateway (``account-md5.txt``).

Every endpoint is ``POST`` with an ``application/x-www-form-urlencoded`` body carrying ``account`` and
``pwd``: the MD5 of the password as 32 hex digits, lower case unless the simulated account's extra
``pwd_case`` is ``upper`` (the other case is refused, as a byte-exact comparison at the vendor would).
Replies are ``{code, data, message}`` with ``code`` ``"00"`` on success. The document lists no error codes,
so the simulator uses these (the hook keys on none of them, it shows the ``message``):

``01`` parameter missing or malformed (also a body that is not a form), ``02`` account or pwd wrong,
``03`` invalid mobile number, ``04`` more than 3000 mobiles, ``05`` content empty or without 【signature】,
``06`` taskId already used (the document calls it globally unique, so a repeated taskId is refused
rather than sent twice), ``07`` balance insufficient, ``08`` extNo not a positive integer.

A send without ``taskId`` gets one made up. Report and inbound pulls are queues: each item is handed out
once, at most 1000 per pull, with numbers masked as the vendor does (``135****9831``).

Push: one JSON object per POST, reports ``{sendId, mobile, times, status}`` with ``DELIVRD`` for success
(the push section's word; pulls say ``DELIVER``) and inbound ``{mobile, content, times, extNo}``, numbers
masked. Each is pushed once, whatever the answer, as the document says; only HTTP 200 counts as received.
"""

from __future__ import annotations

import uuid
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
    checked_mobiles,
    form_fields,
    json_push,
    md5_hex,
    media_type_check,
    vendor_time,
)

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_MOBILES = 3000
PULL_LIMIT = 1000
BAD_PARAMETER, BAD_CREDENTIALS, BAD_MOBILE, TOO_MANY_MOBILES = "01", "02", "03", "04"
BAD_CONTENT, DUPLICATE_TASK, NO_BALANCE, BAD_EXT_NO = "05", "06", "07", "08"
FAILED_STATUS = "MBBLACK"  # a failure status from the document's sample

Form = Mapping[str, str]


def _reply(data: Any) -> SimResponse:
    return SimResponse.json({"code": "00", "data": data, "message": "成功"})


def _error(code: str, message: str) -> SimResponse:
    return SimResponse.json({"code": code, "data": None, "message": message})


def _bad_parameter(problem: str) -> SimResponse:
    return _error(BAD_PARAMETER, problem)


_FORM_ONLY = media_type_check(
    "application/x-www-form-urlencoded",
    lambda media: _bad_parameter(f"Content-Type须为application/x-www-form-urlencoded, 实为{media!r}"),
)


def masked(mobile: str) -> str:
    """How the vendor shows a number in reports and inbound messages: first 3 and last 4 digits."""
    return f"{mobile[:3]}****{mobile[-4:]}"


class AccountMd5Protocol(VendorProtocol):
    """Every endpoint a form POST whose ``account`` and ``pwd`` are checked before anything else."""

    vendor = "account_md5"

    def routes(self) -> dict[tuple[str, str], Handler]:
        endpoints = {"send": self.send, "report": self.report, "mo": self.mo, "queryBalance": self.query_balance}
        return {("POST", f"/api/v1/{name}"): self._authed(endpoint) for name, endpoint in endpoints.items()}

    def _authed(self, endpoint: Callable[[Form], SimResponse]) -> Handler:
        """Form body only, then ``account`` and ``pwd`` checked exactly, before the endpoint sees anything."""

        def signed_in(form: Form) -> SimResponse:
            for name in ("account", "pwd"):
                if not form.get(name, "").strip():
                    return _bad_parameter(f"缺少参数 {name}")
            if form["account"] != self.account.login or form["pwd"] != self._expected_pwd():
                return _error(BAD_CREDENTIALS, "账号或密码错误")
            return endpoint(form)

        return self.route(signed_in, form_fields, _bad_parameter, _FORM_ONLY)

    def _expected_pwd(self) -> str:
        digest = md5_hex(self.account.secret)
        return digest.upper() if str(self.account.extra.get("pwd_case", "lower")).lower() == "upper" else digest

    # ------------------------------------------------------------------ endpoints

    def send(self, form: Form) -> SimResponse:
        mobiles_text = form.get("mobiles", "").strip()
        if not mobiles_text:
            return _error(BAD_PARAMETER, "缺少参数 mobiles")
        mobiles = checked_mobiles(
            mobiles_text,
            MAX_MOBILES,
            normalize_domestic,
            lambda count: _error(TOO_MANY_MOBILES, f"手机号码最多{MAX_MOBILES}个, 实为{count}个"),
            lambda bad: _error(BAD_MOBILE, f"手机号码格式错误: {bad}"),
        )
        content = form.get("content", "")
        if not content.strip():
            return _error(BAD_CONTENT, "缺少参数 content")
        start = content.find("【")
        if start < 0 or content.find("】", start) < 0:
            return _error(BAD_CONTENT, "content须包含【签名】")
        ext_no = form.get("extNo", "")
        if ext_no and not (ext_no.isascii() and ext_no.isdigit() and int(ext_no) > 0):
            return _error(BAD_EXT_NO, "extNo只能为正整数")
        task_id = form.get("taskId", "").strip() or uuid.uuid4().hex
        cost = message_parts(content) * len(mobiles)
        gateway = self.gateway
        with gateway.lock:  # the uniqueness check and the accept must not interleave with another send
            if task_id in gateway.client_refs[self.vendor]:
                return _error(DUPLICATE_TASK, f"taskId {task_id} 已存在")
            if gateway.balances[self.vendor] < cost:
                return _error(NO_BALANCE, "余额不足")
            gateway.accept(self.vendor, task_id, ((m, content) for m in mobiles), ext_no, client_ref=task_id)
        return _reply({"taskId": task_id})

    def report(self, form: Form) -> SimResponse:
        data = [
            {
                "sendId": m.batch_id,
                "status": "DELIVER" if m.delivered else FAILED_STATUS,
                "times": vendor_time(m.report_at, TIME_FORMAT),
                "mobile": masked(m.mobile),
                "extNo": m.ext_no,
            }
            for m in self.gateway.take_reports(self.vendor, limit=PULL_LIMIT)
        ]
        return _reply(data)

    def mo(self, form: Form) -> SimResponse:
        data = [
            {
                "mobile": masked(m.mobile),
                "content": m.content,
                "times": vendor_time(m.received_at, TIME_FORMAT),
                # a JSON number, as the document's sample shows it
                "extNo": int(m.ext_no) if m.ext_no.isdigit() else m.ext_no,
            }
            for m in self.gateway.take_inbound(self.vendor, limit=PULL_LIMIT)
        ]
        return _reply(data)

    def query_balance(self, form: Form) -> SimResponse:
        return _reply({"balance": self.gateway.balances[self.vendor], "payment": 0, "paymentName": "预付"})

    # ------------------------------------------------------------------ push

    def push_reports(self, messages: Sequence[Message]) -> list[PushPayload]:
        return [
            json_push(
                {
                    "sendId": m.batch_id,
                    "mobile": masked(m.mobile),
                    "times": vendor_time(m.report_at, TIME_FORMAT),
                    "status": "DELIVRD" if m.delivered else FAILED_STATUS,
                },
                1,
            )
            for m in messages
        ]

    def push_inbound(self, messages: Sequence[Inbound]) -> list[PushPayload]:
        return [
            json_push(
                {
                    "mobile": masked(m.mobile),
                    "content": m.content,
                    "times": vendor_time(m.received_at, TIME_FORMAT),
                    "extNo": m.ext_no,
                },
                1,
            )
            for m in messages
        ]
