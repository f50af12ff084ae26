"""Account + MD5 password gateway (``account-md5.txt``): form posts, client taskId, masked pull replies.

Every call is ``POST application/x-www-form-urlencoded`` carrying ``account`` and ``pwd`` (the MD5 of the
password). The document lists no error codes, only ``"00"`` for success, so errors carry the vendor's
``message`` as their explanation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from decimal import Decimal
from functools import cached_property
from typing import Any, ClassVar

import requests

from airflow_provider_sms.errors import SmsConfigurationError, SmsInvalidRequestError, SmsVendorError
from airflow_provider_sms.hooks.base import (
    BALANCE,
    INBOUND,
    PULL_OPERATIONS,
    QUEUE,
    REPORTS,
    SEND,
    SendRequest,
    SmsHook,
    mask,
    parse_id,
)
from airflow_provider_sms.hooks.push import Answer, VendorPush
from airflow_provider_sms.records import (
    Balance,
    DeliveryReport,
    InboundMessage,
    SendReceipt,
)

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SUCCESS = "00"
#: The pull sample says ``DELIVER``, the push section ``DELIVRD``; both mean delivered.
DELIVERED_STATUSES = frozenset({"DELIVER", "DELIVRD"})
#: The document advises keeping content (signature included) within this many characters.
ADVISED_CONTENT_CHARS = 500
#: The document gives no error-code table: only "00" is defined. The vendor's message explains the rest.
CODE_MEANINGS: dict[str, str] = {}
PAYMENT_NAMES = {"0": "prepaid", "1": "postpaid"}

PATHS = {
    "send": "/api/v1/send",
    REPORTS: "/api/v1/report",
    INBOUND: "/api/v1/mo",
    BALANCE: "/api/v1/queryBalance",
}


class AccountMd5Push(VendorPush):
    """One object per POST (JSON, or a form like the rest of the API), pushed once only: HTTP 200 is
    answered only once it is stored, and a push that was not is logged, the last copy there is."""

    accepts_form = True
    repushes = False

    def ok(self) -> Answer:
        return Answer(200, {"code": SUCCESS, "message": "成功"})

    def refused(self, status: int, problem: str) -> Answer:
        return Answer(status, {"code": str(status), "message": problem})

    def not_stored(self) -> Answer:
        return Answer(503, {"code": "503", "message": "not stored"})


class AccountMd5Hook(SmsHook):
    """Hook for the ``sms_account_md5`` connection: login is the account, password the interface password.

    The host is required (the document names no base URL). Extras: ``sign`` (signature put in 【】 at the
    start of the content when it has none), ``pwd_case`` (``lower``, the default, or ``upper``: the case of
    the 32 hex digits of the MD5 sent as ``pwd``, for accounts the administrator set up that way).
    Sends carry a ``taskId``: the ``client_ref`` option (``-<n>`` per request when split) or a fresh one.
    The document calls it globally unique, so a resend with the same ``client_ref`` is refused by the
    vendor instead of being delivered twice. The receipt's ``batch_id`` is the taskId, which reports
    return as ``sendId``; reports and inbound messages carry masked numbers (``135****9831``).
    """

    vendor = "account_md5"
    push = AccountMd5Push(vendor)
    max_numbers_per_request = 3000
    features = frozenset({SEND, REPORTS, INBOUND, BALANCE})
    #: the document lists no error codes: none is known to mean an insufficient balance (a refusal mid-send
    #: stops the send like any refusal; the error shows the code and the vendor's message)
    insufficient_balance_codes: ClassVar[frozenset[str]] = frozenset()
    supported_options = frozenset({"signature", "ext_no", "client_ref"})
    report_mode = QUEUE
    #: taskId is "全局唯一": the vendor refuses a repeat instead of sending it twice
    idempotent_client_ref = True

    # ------------------------------------------------------------------ credentials

    @cached_property
    def _credentials(self) -> dict[str, str]:
        """``account`` and ``pwd`` as every call sends them; the MD5 is masked as soon as it exists."""
        account, password = self.require_login_and_password("account (login)", "password")
        case = str(self.config.extra("pwd_case", "lower")).strip().lower()
        if case not in ("lower", "upper"):
            raise SmsConfigurationError(
                f"connection {self.sms_conn_id!r}: extra 'pwd_case' must be lower or upper, got {case!r}"
            )
        digest = hashlib.md5(password.encode("utf-8")).hexdigest()
        pwd = digest.upper() if case == "upper" else digest
        mask(pwd)
        return {"account": account, "pwd": pwd}

    # ------------------------------------------------------------------ wire

    def _post(self, call: str, payload: Mapping[str, str], operation: str, send: SendRequest | None = None) -> Any:
        response = self.request(operation, "POST", PATHS[call], data={**self._credentials, **payload}, send=send)
        return self._reply(response, operation)

    def _reply(self, response: requests.Response, operation: str) -> Mapping[str, Any]:
        reply = self.parse_json(response, operation)
        code = self.field(reply, "code", operation, response)
        if str(code) != SUCCESS:
            raise self.vendor_error(code, reply.get("message"), CODE_MEANINGS, operation)
        return reply

    def _pull_items(self, reply: Mapping[str, Any], operation: str) -> list[Mapping[str, Any]]:
        """The pulled list; the document's sample wraps it in an object, so unwrap a single-key object."""
        data = reply.get("data")
        if isinstance(data, Mapping):
            if not data:
                return []
            if len(data) != 1:
                raise self.bad_reply(
                    operation, f"'data' should be a list, got an object with keys {sorted(map(str, data))}"
                )
            data = next(iter(data.values()))
        return self.data_list(data, operation)

    # ------------------------------------------------------------------ interface

    def _validate_request(self, request: SendRequest) -> None:
        ext_no = request.options.ext_no
        if ext_no is not None and not _positive_integer(str(ext_no)):
            raise SmsInvalidRequestError(f"{self.vendor}: ext_no must be a positive integer, got {ext_no!r}")
        if request.index == 0:
            length = len(self.signed_content(request.content or "", request.options.signature))
            if length > ADVISED_CONTENT_CHARS:
                self.log.warning(
                    "%s: content is %d characters; the vendor advises at most %d",
                    self.vendor,
                    length,
                    ADVISED_CONTENT_CHARS,
                )

    def _submit(self, request: SendRequest) -> SendReceipt:
        operation = request.description
        task_id = request.client_ref or self.new_client_ref()
        payload = {
            "mobiles": ",".join(request.mobiles),
            "content": self.signed_content(request.content or "", request.options.signature),
            "taskId": task_id,
        }
        if request.options.ext_no:
            payload["extNo"] = str(request.options.ext_no)
        try:
            reply = self._post("send", payload, operation, send=request)
        except SmsVendorError as exc:
            if request.client_ref and request.may_repeat and _repeated_task_id(exc, task_id):
                # the taskId is unique at the vendor: a refusal as "already used" means the earlier
                # request under it was accepted; its reports carry this taskId as sendId
                self.log.info(
                    "%s: %s: taskId %s was already accepted in an earlier request (%s); not sent again",
                    self.vendor,
                    operation,
                    task_id,
                    exc.vendor_message,
                )
                return SendReceipt(self.vendor, task_id, request.mobiles, self.now(), already_accepted=True)
            raise
        # The vendor accepted the send: its reply may echo the taskId (the sample shows it empty); ours stands
        # unless the vendor names another, which is then the sendId its reports will carry.
        data = reply.get("data")
        echoed = data.get("taskId") if isinstance(data, Mapping) else None
        batch_id = task_id
        if echoed not in (None, ""):
            try:
                batch_id = parse_id(echoed, field_name="taskId")
            except ValueError as exc:
                # accepted all the same: record it under our own taskId rather than lose track of it
                self.log.warning(
                    "%s: %s accepted, but the echoed taskId is unreadable (%s); keeping %s",
                    self.vendor,
                    operation,
                    exc,
                    task_id,
                )
            if batch_id != task_id:
                self.log.warning(
                    "%s: %s was sent with taskId %s but accepted as %s; its reports will carry the latter",
                    self.vendor,
                    operation,
                    task_id,
                    batch_id,
                )
        return SendReceipt(self.vendor, batch_id, request.mobiles, self.now(), raw=dict(reply))

    def _pull_records(self, kind: str) -> list[Mapping[str, Any]]:
        response = self.request(PULL_OPERATIONS[kind], "POST", PATHS[kind], data=dict(self._credentials))
        return self._records_in_reply(kind, response)

    def _records_in_reply(self, kind: str, response: requests.Response) -> list[Mapping[str, Any]]:
        operation = PULL_OPERATIONS[kind]
        return self._pull_items(self._reply(response, operation), operation)

    def report_from_record(self, item: Mapping[str, Any], *, pushed: bool = False) -> DeliveryReport:
        """One ``{sendId, mobile, times, status}`` record (pulls add ``extNo``); ``mobile`` is masked."""
        operation = "delivery report push" if pushed else "delivery report pull"
        status = self.text_field(item, "status", operation).strip()
        return self.delivery_report(
            item,
            operation,
            batch="sendId",
            delivered=status.upper() in DELIVERED_STATUSES,
            code=status,
            failure=status,
            reported_at=item.get("times"),
            time_format=TIME_FORMAT,
        )

    def inbound_from_record(self, item: Mapping[str, Any], *, pushed: bool = False) -> InboundMessage:
        """One ``{mobile, content, times, extNo}`` record, pulled or pushed; ``mobile`` is masked."""
        operation = "inbound push" if pushed else "inbound pull"
        return self.inbound_message(item, operation, time="times", time_format=TIME_FORMAT, ext_no="extNo")

    def ext_no_of(self, item: Mapping[str, Any], name: str, operation: str) -> str:
        """The extension as text: the MO sample sends it as a JSON number (``10``, or ``10.0``)."""
        value = item.get(name)
        if isinstance(value, Decimal) and value == value.to_integral_value():
            return str(int(value))
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # 0 included, as it always was
        return super().ext_no_of(item, name, operation)

    def _get_balance(self) -> Balance:
        operation = "balance query"
        reply = self._post(BALANCE, {}, operation)
        data = self.field(reply, "data", operation)
        amount = self.balance_amount(self.field(data, "balance", operation), operation)
        return Balance(self.vendor, amount, "", raw=data)

    def _check_connection(self) -> str:
        try:
            balance = self._get_balance()
        except SmsVendorError as exc:
            raise SmsVendorError(
                exc.vendor,
                exc.code,
                exc.vendor_message,
                "account, password or source IP rejected",
                exc.operation,
            ) from None
        raw = balance.raw or {}
        payment = PAYMENT_NAMES.get(str(raw.get("payment")), str(raw.get("paymentName") or "unknown payment"))
        return f"account {self.config.login} at {self.config.base_url}: balance {balance.amount} ({payment})"


#: words of a refusal that says a taskId was used before. The document lists no error codes, so the
#: vendor's message is all there is: it must name the taskId (or "taskId") and say it exists already.
REPEATED_TASK_WORDS = ("已存在", "重复", "已使用", "已被使用", "exist", "duplicate", "already used")


def _repeated_task_id(error: SmsVendorError, task_id: str) -> bool:
    message = error.vendor_message.lower()
    names_it = task_id.lower() in message or "taskid" in message.replace(" ", "").replace("_", "")
    return names_it and any(word in message for word in REPEATED_TASK_WORDS)


def _positive_integer(text: str) -> bool:
    """``extNo`` "只能为正整数": ASCII digits whose value is above zero."""
    return text.isascii() and text.isdigit() and int(text) > 0
