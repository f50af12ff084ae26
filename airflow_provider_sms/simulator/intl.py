"""Simulated international SMS gateway (``intl-appkey.txt``).

Every call is checked as the document's chapter 1 lays it out: the ``appKey`` header (1002 when
wrong), ``appSecret`` as the MD5 of the secret in 32 upper-case hex (1003 otherwise, lower case
included), ``Accept`` and ``Content-Type: application/json;charset=utf-8`` (1001), then the body.
Reports are a query by (msgId, mobile): unknown pairs are left out of the answer, 1012 comes back
when none is known, and 1010 (TimeSuperRange) for the whole query when a pair is older than 30 days.
A failed message reports ``UNDELIV``.

Push (chapter 5): one report object per POST, as soon as it is due, with the ``appKey`` and ``appSecret``
headers. ``status`` follows the push table (§5.4): 0 delivered, 1 failed; ``timestamp`` has the 12 digits
of the push prose (``yyyyMMddHHmm``). The answer must be ``{"code": 0}``; any other answer (a non-zero
code, not JSON, an HTTP error, no answer) makes the push go out twice more, as §5.6 says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_sms.numbers import message_parts, normalize_international
from airflow_provider_sms.simulator.core import (
    Handler,
    Message,
    PushPayload,
    Refusal,
    SimRequest,
    SimResponse,
    VendorProtocol,
    checked_mobiles,
    future_time,
    json_object,
    json_push,
    json_reply_code,
    md5_hex,
    no_body,
    vendor_time,
)

PREFIX = "/api/v1/international/sms"
TIME_FORMAT = "%Y%m%d%H%M%S"
PUSH_TIME_FORMAT = "%Y%m%d%H%M"
#: how often an unacknowledged push is made again (§5.6: "重推两次")
PUSH_RETRIES = 2
MAX_MOBILES = 1000
MAX_STATUS_PAIRS = 500
REPORT_DAYS = 30

PARAM_ERROR, APP_KEY_ERROR, PASSWORD_ERROR = 1001, 1002, 1003
CONTENT_ERROR, MOBILE_ERROR, AMOUNT_NOT_ENOUGH = 1006, 1007, 1009
TIME_SUPER_RANGE, SEND_TIME_ERROR, NO_REPORT_ERROR = 1010, 1011, 1012

Endpoint = Callable[[Any], SimResponse]


def _reply(data: Any) -> SimResponse:
    return SimResponse.json({"code": 0, "msg": "ok", "data": data})


def _error(code: int, message: str) -> SimResponse:
    """Error replies carry no ``data``, as the document's failure example shows."""
    return SimResponse.json({"code": code, "msg": message})


def _param_error(problem: str) -> SimResponse:
    return _error(PARAM_ERROR, problem)


def _report_record(message: Message, time_format: str, *, failed: int) -> dict[str, Any]:
    """A due report as queried (§4.5: failed is 2, time in 14 digits) or pushed (§5.4: failed is 1, 12 digits)."""
    return {
        "mobile": message.mobile,
        "msgId": message.batch_id,
        "timestamp": vendor_time(message.report_at, time_format),
        "status": 0 if message.delivered else failed,
        "desc": "" if message.delivered else "undeliverable",
        "errorCode": "DELIVRD" if message.delivered else "UNDELIV",
    }


class IntlProtocol(VendorProtocol):
    """JSON calls authenticated by the ``appKey`` / ``appSecret`` headers; reports queried, or pushed."""

    vendor = "intl"
    push_kinds = frozenset({"reports"})
    push_retries = PUSH_RETRIES

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("POST", f"{PREFIX}/send"): self._checked(self.send, body=True),
            ("GET", f"{PREFIX}/balance"): self._checked(self.balance, body=False),
            ("POST", f"{PREFIX}/status"): self._checked(self.status, body=True),
        }

    def _checked(self, endpoint: Endpoint, *, body: bool) -> Handler:
        """Headers first (credentials, then media types), then the JSON object body where there is one."""
        return self.route(endpoint, json_object if body else no_body, _param_error, self._check_headers)

    def _check_headers(self, request: SimRequest) -> None:
        error = self._header_error(request)
        if error is not None:
            raise Refusal(error)

    def _header_error(self, request: SimRequest) -> SimResponse | None:
        if request.header("appKey") != self.account.login:
            return _error(APP_KEY_ERROR, "AppKeyError")
        if request.header("appSecret") != md5_hex(self.account.secret).upper():
            return _error(PASSWORD_ERROR, "PasswordError")
        content_type = request.header("Content-Type") or ""
        media_type, _, params = content_type.partition(";")
        charset = params.strip().lower().removeprefix("charset=").strip('"') if params.strip() else "utf-8"
        if media_type.strip().lower() != "application/json" or charset != "utf-8":
            return _error(PARAM_ERROR, f"Content-Type must be application/json;charset=utf-8, got {content_type!r}")
        accept = (request.header("Accept") or "").lower()
        if "application/json" not in accept and "*/*" not in accept:
            return _error(PARAM_ERROR, f"Accept must allow application/json, got {accept!r}")
        return None

    # ------------------------------------------------------------------ endpoints

    def send(self, body: Mapping[str, Any]) -> SimResponse:
        mobile, content = body.get("mobile"), body.get("content")
        if not isinstance(mobile, str) or not mobile.strip():
            return _error(PARAM_ERROR, "mobile is required")
        if not isinstance(content, str) or not content.strip():
            return _error(PARAM_ERROR, "content is required")
        mobiles = checked_mobiles(
            mobile,
            MAX_MOBILES,
            normalize_international,
            lambda _: _param_error(f"at most {MAX_MOBILES} mobiles per request"),
            lambda bad: _error(MOBILE_ERROR, f"Illegal cell phone: {bad}"),
        )
        end = content.find("】")
        if not content.startswith("【") or end < 2:
            return _error(CONTENT_ERROR, "content must start with 【signature】")
        sender_id = body.get("senderID")
        if sender_id is not None and not isinstance(sender_id, str):
            return _error(PARAM_ERROR, "senderID must be a string")
        send_time = body.get("sendTime")
        if send_time not in (None, ""):
            # Only 14 digits: strptime alone would also take shorter values with one-digit fields.
            if not (isinstance(send_time, str) and len(send_time) == 14 and send_time.isdigit()):
                return _error(SEND_TIME_ERROR, "sendTime must be yyyyMMddHHmmss")
            if not future_time(send_time, TIME_FORMAT):
                return _error(SEND_TIME_ERROR, "sendTime must be a future time within 30 days")
        if self.gateway.balances[self.vendor] < message_parts(content) * len(mobiles):
            return _error(AMOUNT_NOT_ENOUGH, "AmountNotEnough")
        msg_id = self.gateway.next_batch_id()
        self.gateway.accept(self.vendor, msg_id, ((m, content) for m in mobiles))
        return _reply({"msgId": msg_id})

    def balance(self, body: None) -> SimResponse:
        return _reply({"balance": self.gateway.balances[self.vendor], "currencyName": "人民币", "currencyCode": "CNY"})

    def status(self, body: Mapping[str, Any]) -> SimResponse:
        pairs = body.get("data")
        if not isinstance(pairs, list) or not pairs:
            return _error(PARAM_ERROR, "data must be a non-empty list of {msgId, mobile}")
        if len(pairs) > MAX_STATUS_PAIRS:
            return _error(PARAM_ERROR, f"at most {MAX_STATUS_PAIRS} status queries per request")
        oldest = datetime.now(timezone.utc) - timedelta(days=REPORT_DAYS)
        found = []
        for pair in pairs:
            if not isinstance(pair, Mapping):
                return _error(PARAM_ERROR, "each data item must be an object {msgId, mobile}")
            msg_id, mobile = pair.get("msgId"), pair.get("mobile")
            if not (isinstance(msg_id, str) and msg_id and isinstance(mobile, str) and mobile):
                return _error(PARAM_ERROR, "msgId and mobile are required strings")
            message = self.gateway.query_report(self.vendor, msg_id, mobile)
            if message is not None and message.submitted_at < oldest:
                # "此接口只能获取最近30天的状态报告": the whole query is refused, its other pairs too
                return _error(TIME_SUPER_RANGE, "TimeSuperRange")
            if message is not None:
                found.append(self._report(message))
        if not found:
            return _error(NO_REPORT_ERROR, "NoReportError")
        return _reply(found)

    def _report(self, message: Message) -> dict[str, Any]:
        if not self.gateway.report_ready(message):
            return {
                "mobile": message.mobile,
                "msgId": message.batch_id,
                "timestamp": "",
                "status": 1,
                "desc": "",
                "errorCode": "",
            }
        return _report_record(message, TIME_FORMAT, failed=2)

    # ------------------------------------------------------------------ push

    def push_reports(self, messages: Sequence[Message]) -> list[PushPayload]:
        headers = {"appKey": self.account.login, "appSecret": md5_hex(self.account.secret).upper()}
        return [json_push(_report_record(m, PUSH_TIME_FORMAT, failed=1), 1, headers) for m in messages]

    def push_acknowledged(self, status: int, body: bytes) -> bool:
        code = json_reply_code(body)
        return status == 200 and code == 0 and not isinstance(code, bool)
