"""International SMS gateway (``intl-appkey.txt``): appKey/appSecret headers, JSON, reports queried by id.

The account is authenticated on every call by two headers, ``appKey`` and ``appSecret`` (the MD5 of
the secret as 32 upper-case hex), so there is no token. Delivery reports are not a queue: they are
asked for by (msgId, mobile) pairs, up to 500 a call, for messages of the last 30 days.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any

import requests

from airflow_provider_sms.errors import SmsInvalidRequestError, SmsVendorError
from airflow_provider_sms.hooks.base import BALANCE, QUERY, REPORTS, SEND, SendRequest, SmsHook, mask, parse_id
from airflow_provider_sms.hooks.push import Answer, HeaderReader, VendorPush, same_secret
from airflow_provider_sms.records import (
    DELIVERED,
    EXPIRED,
    FAILED,
    PENDING,
    Balance,
    DeliveryReport,
    DeliveryStatus,
    SendReceipt,
)

PREFIX = "/api/v1/international/sms"
SEND_TIME_FORMAT = "%Y%m%d%H%M%S"
# The report time is 14 digits in the document's example and 12 in its prose; strptime would read a
# 12-digit value with the 14-digit format by taking one-digit minutes and seconds, so pick by length.
REPORT_TIME_FORMATS = {14: "%Y%m%d%H%M%S", 12: "%Y%m%d%H%M"}
CONTENT_TYPE = "application/json;charset=utf-8"

NO_REPORT = "1012"
TIME_SUPER_RANGE = "1010"  # a queried pair lies outside the 30 days the vendor answers for

#: Chapter 6 "ResultCode" of the document: the name it gives each code, then what it means.
CODE_MEANINGS: dict[str, str] = {
    "1001": "ParamError: a parameter is missing or invalid",
    "1002": "AppKeyError: the appKey (login) is unknown",
    "1003": "PasswordError: the appSecret is wrong (MD5 of the secret, 32 upper-case hex)",
    "1004": "BindIpError: this client IP is not bound to the account",
    "1005": "AccountStop: the account is disabled",
    "1006": "ContentError: the content is rejected (it must start with 【signature】)",
    "1007": "MobileError: a mobile number is invalid (country code and number, digits only)",
    "1008": "ExtNumberError: the extension number is invalid",
    "1009": "AmountNotEnough: the account balance is insufficient",
    "1010": "TimeSuperRange: the query time is out of range (reports are kept 30 days)",
    "1011": "SendTimeError: sendTime is not a valid yyyyMMddHHmmss time",
    "1012": "NoReportError: no delivery report was found",
    "9999": "other: unknown error, contact the vendor",
}

#: ``status`` of a queried report (§4.5): 0 delivered, 1 no report yet, 2 failed.
REPORT_STATUSES: dict[str, DeliveryStatus] = {"0": DELIVERED, "1": PENDING, "2": FAILED}
#: ``status`` of a pushed report. §5.4 says "0 delivered, 1 failed"; its sample (copied from §4.6)
#: shows a failure as 2. A push is made only once the gateway has a report (§5.2), so the query's
#: "1 = no report yet" cannot occur in one: 1 and 2 both mean failed.
PUSH_REPORT_STATUSES: dict[str, DeliveryStatus] = {"0": DELIVERED, "1": FAILED, "2": FAILED}


#: intl's own result codes (chapter 6) for the refusals the receiver makes
PUSH_REFUSAL_CODES: dict[int, int] = {400: 1001, 413: 1001, 415: 1001, 401: 1003, 403: 1004}
PUSH_NOT_STORED_CODE = 9999


def app_secret_header(secret: str) -> str:
    """What the ``appSecret`` header carries, on calls and on pushes: the MD5 of the secret, 32 upper-case hex.

    Masked at once, as it opens the account like the secret."""
    digest = hashlib.md5(secret.encode("utf-8")).hexdigest().upper()
    mask(digest)
    return digest


class IntlPush(VendorPush):
    """One report object per POST (chapter 5), authenticated by the account's appKey/appSecret headers.

    The answer is ``{"code": 0, "msg": "ok"}``; any other code makes the vendor push twice more (§5.6).
    A store failure is answered with HTTP 200 and code 9999: the document keys the re-push on the
    code, and an HTTP client that throws on a 5xx might never read it.
    """

    kinds = frozenset({REPORTS})
    header_auth = True

    def credentials_ok(self, login: str, password: str, header: HeaderReader) -> bool:
        """The headers every call carries, checked in constant time (every check evaluated: no early exit)."""
        expected = app_secret_header(password)
        given = (header("appSecret") or "").upper()
        return bool(login and password) & same_secret(header("appKey"), login) & same_secret(given, expected)

    def ok(self) -> Answer:
        return Answer(200, {"code": 0, "msg": "ok"})

    def refused(self, status: int, problem: str) -> Answer:
        return Answer(status, {"code": PUSH_REFUSAL_CODES.get(status, PUSH_NOT_STORED_CODE), "msg": problem})

    def not_stored(self) -> Answer:
        return Answer(200, {"code": PUSH_NOT_STORED_CODE, "msg": "not stored; push again"})


class IntlSmsHook(SmsHook):
    """Hook for the ``sms_intl`` connection: login is the appKey, password the app secret.

    Numbers carry their country code without ``+`` (``8613800138000``), as the vendor reads them:
    every number is checked before anything is sent (``numbers.international_mobile``, through
    ``international = True``): a mainland mobile by the domestic rule, any other number by
    ``phonenumbers`` (a valid mobile of its country; fixed lines and the like are refused, naming the
    country), and sent as E.164 digits. Extras: ``sender_id`` (default sender ID), ``sign`` (put in
    【】 at the start of content that has none).
    """

    vendor = "intl"
    push = IntlPush(vendor)
    max_numbers_per_request = 1000
    international = True
    features = frozenset({SEND, REPORTS, BALANCE})
    supported_options = frozenset({"signature", "scheduled_at", "sender_id"})
    report_mode = QUERY
    report_query_limit = 500
    #: "只能查询30天内的状态报告" (code 1010 TimeSuperRange past it): older pairs expire instead
    report_window = timedelta(days=30)
    #: 1009 AmountNotEnough (额度不足); the balance query states a currency, so the balance is money
    insufficient_balance_codes = frozenset({"1009"})
    #: AppKeyError, PasswordError, BindIpError, AccountStop and AmountNotEnough: the account's, not the message's
    not_accepted_codes = frozenset({"1002", "1003", "1004", "1005", "1009"})
    balance_is_money = True

    # ------------------------------------------------------------------ wire

    @cached_property
    def app_secret(self) -> str:
        """What the ``appSecret`` header carries (``app_secret_header``)."""
        _, secret = self.require_login_and_password("app key (login)", "app secret (password)")
        return app_secret_header(secret)

    def _headers(self) -> dict[str, str]:
        app_key, _ = self.require_login_and_password("app key (login)", "app secret (password)")
        return {
            "appKey": app_key,
            "appSecret": self.app_secret,
            "Accept": "application/json",
            "Content-Type": CONTENT_TYPE,
        }

    def _call(
        self,
        method: str,
        call: str,
        operation: str,
        payload: Mapping[str, Any] | None = None,
        send: SendRequest | None = None,
    ) -> Any:
        """One call; returns the reply's ``data`` (None when absent) or raises the vendor's error."""
        body = None if payload is None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
        response = self.request(operation, method, f"{PREFIX}/{call}", data=body, headers=self._headers(), send=send)
        return self._data(response, operation)

    def _data(self, response: requests.Response, operation: str) -> Any:
        reply = self.parse_json(response, operation)
        code = self.field(reply, "code", operation, response)
        if isinstance(code, bool) or str(code).strip() != "0":
            raise self.vendor_error(code, reply.get("msg"), CODE_MEANINGS, operation)
        return reply.get("data")

    # ------------------------------------------------------------------ interface

    def _validate_request(self, request: SendRequest) -> None:
        content = self.signed_content(request.content or "", request.options.signature)
        end = content.find("】")
        if not content.startswith("【") or end < 2:
            raise SmsInvalidRequestError(
                f"{self.vendor}: content must start with 【signature】; pass signature=... or set the "
                "connection's sign extra"
            )

    def _submit(self, request: SendRequest) -> SendReceipt:
        options = request.options
        operation = request.description
        payload: dict[str, Any] = {
            "mobile": ",".join(request.mobiles),
            "content": self.signed_content(request.content or "", options.signature),
        }
        sender_id = options.sender_id or self.config.extra("sender_id")
        if sender_id:
            payload["senderID"] = str(sender_id)
        if options.scheduled_at:
            payload["sendTime"] = self.format_vendor_time(options.scheduled_at, SEND_TIME_FORMAT)
        data = self._call("POST", "send", operation, payload, send=request)
        try:
            msg_id = parse_id(self.field(data, "msgId", operation), field_name="msgId")
        except ValueError as exc:
            raise self.bad_reply(operation, str(exc)) from None
        return SendReceipt(self.vendor, msg_id, request.mobiles, self.now(), raw=data)

    def _fetch_reports(self, pairs: Sequence[tuple[str, str]] | None) -> list[DeliveryReport]:
        if not pairs:
            return []
        operation = f"status query ({len(pairs)} messages)"
        query = {"data": [{"msgId": str(batch_id), "mobile": str(mobile)} for batch_id, mobile in pairs]}
        try:
            data = self._call("POST", "status", operation, query)
        except SmsVendorError as exc:
            if exc.code == NO_REPORT:  # none of the pairs is known (yet, or any more): not an error
                return []
            if exc.code != TIME_SUPER_RANGE:
                raise
            return self._outside_the_window(pairs)
        return self.parse_records(self.data_list(data, operation), self.report_from_record, operation, "report")

    def _outside_the_window(self, pairs: Sequence[tuple[str, str]]) -> list[DeliveryReport]:
        """1010 answers the whole query for the pairs it concerns: halve until they are found. Those the
        vendor will never answer for again are ``expired``; the others' reports are read as usual."""
        if len(pairs) > 1:
            middle = len(pairs) // 2
            return self._fetch_reports(pairs[:middle]) + self._fetch_reports(pairs[middle:])
        (batch_id, mobile) = pairs[0]
        return [
            DeliveryReport(
                vendor=self.vendor,
                batch_id=str(batch_id),
                mobile=str(mobile),
                status=EXPIRED,
                code=TIME_SUPER_RANGE,
                description="the vendor answers report queries for 30 days only (1010 TimeSuperRange)",
                reported_at=None,
                raw={"msgId": str(batch_id), "mobile": str(mobile), "code": TIME_SUPER_RANGE},
            )
        ]

    def report_from_record(self, item: Mapping[str, Any], *, pushed: bool = False) -> DeliveryReport:
        """One ``{mobile, msgId, timestamp, status, desc, errorCode}`` record, queried or pushed.

        The two differ in ``status`` only: see ``REPORT_STATUSES`` and ``PUSH_REPORT_STATUSES``.
        """
        operation = "delivery report push" if pushed else "status query"
        statuses = PUSH_REPORT_STATUSES if pushed else REPORT_STATUSES
        status = self.field(item, "status", operation)
        state = statuses.get(str(status)) if not isinstance(status, (bool, float, Decimal)) else None
        if state is None:
            raise ValueError(f"status {status!r} is not 0, 1 or 2")
        code = self.text_field(item, "errorCode", operation, required=False)
        return DeliveryReport(
            vendor=self.vendor,
            batch_id=parse_id(self.field(item, "msgId", operation), field_name="msgId"),
            mobile=self.text_field(item, "mobile", operation),
            status=state,
            code=code,
            description=self.text_field(item, "desc", operation, required=False) or _describe(state, code),
            reported_at=None if state == PENDING else self._report_time(item.get("timestamp")),
            raw=item,
        )

    def _report_time(self, value: Any) -> datetime | None:
        text = "" if value is None else str(value).strip()
        if not text:
            return None
        fmt = REPORT_TIME_FORMATS.get(len(text)) if text.isdigit() else None
        if fmt is None:
            raise ValueError(f"timestamp {text!r} is neither yyyyMMddHHmmss nor yyyyMMddHHmm")
        return self.vendor_time(text, [fmt])

    def _get_balance(self) -> Balance:
        operation = "balance query"
        data = self._call("GET", "balance", operation)
        amount = self.field(data, "balance", operation)
        currency = self.field(data, "currencyCode", operation)
        return Balance(self.vendor, self.balance_amount(amount, operation), str(currency), raw=data)

    def _check_connection(self) -> str:
        balance = self._get_balance()
        return (
            f"appKey {self.config.login} accepted at {self.config.base_url}: "
            f"balance {balance.amount} {balance.currency}"
        )


def _describe(state: str, code: str) -> str:
    if state == PENDING:
        return "no report yet"
    if state == DELIVERED:
        return "delivered"
    return f"operator code {code}" if code else "failed"
