"""Simulated China Mobile Cloud MAS (``cloud-mas.txt``): its HTTPS interface, and its HTTP one on the HTTP port.

HTTPS serves the document's ``/sms/submit``, ``/sms/tmpsubmit``, ``/sms/report`` and ``/sms/deliver``.
Accounts opened on HTTP send the same bodies to ``/sms/norsubmit`` (Cloud MAS's integration desk: "HTTP
普通短信 http://112.35.1.155:1992/sms/norsubmit", "https 普通短信 https://…:28888/sms/submit"); the HTTP
port serves that, ``/sms/tmpsubmit`` and the two pulls. ``/sms/submit`` is not on HTTP, nor
``/sms/norsubmit`` on HTTPS.

Every request body is the base64 text of a UTF-8 JSON object. The document names no content type, and
the real gateway takes what public clients send it successfully: ``application/json`` (the data type the
document states), ``text/plain`` and ``application/x-www-form-urlencoded`` or no ``Content-Type`` at all
(what Java's ``HttpURLConnection`` and Hutool's ``HttpUtil.post(url, base64)`` send in the clients built
from the vendor's demo), and the base64 text as a JSON string, quotes included (``"eyJ..."``, what a
JSON serialiser makes of a string). Any other content type, or a body that is not base64 of a JSON
object, is ``InvalidMessage``. Replies are plain JSON. Choices where the document is silent:

- The send replies spell the batch id ``msgGroup``, as replies recorded from the real gateway do and as
  the public clients read it (the document's send tables say ``mgsGroup``; its report says ``msgGroup``).
- Errors of every endpoint use the send reply's shape, ``{"rspcod": ..., "msgGroup": "", "success": false}``;
  the pulls answer a wrong ecName/apId/secretKey with ``InvalidUsrOrPwd``.
- An empty ``sign`` is ``NoSignId``; a sign other than the account's code is ``IllegalSignId``.
- Invalid mobile numbers, a bad ``addSerial`` (digits; service code plus extension at most 20 digits), a
  many-to-many ``content`` that is not a JSON object of number -> text, and template ``params`` that are not
  a non-empty JSON array of strings are ``InvalidMessage``. 1000 or more numbers in many-to-many mode are
  ``TooManyMobiles`` (the document says fewer than 1000).
- A second report (or inbound) pull within ``config.pull_interval`` seconds of the last one is answered
  HTTP 429 with ``Retry-After`` (whole seconds, the full interval: the gateway does not say how much of it
  is left); the real server's answer is undocumented.
- The platform adds the signature text (here ``【ecName】``) to each message, so parts are counted with it.
- Failed reports carry ``reportStatus`` ``UNDELIV`` and ``errorCode`` ``DB:0140``; delivered ones carry
  ``DELIVRD`` in both.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any

from airflow_provider_sms.numbers import normalize_domestic
from airflow_provider_sms.simulator.core import (
    BadRequest,
    Handler,
    SimRequest,
    SimResponse,
    VendorProtocol,
    md5_hex,
    media_type_check,
    vendor_time,
)

#: content types real clients send their base64 body with and the real gateway accepts ("" = no header)
CONTENT_TYPES = frozenset({"application/json", "text/plain", "application/x-www-form-urlencoded", ""})
REPORT_TIME_FORMAT = "%Y%m%d%H%M%S"
INBOUND_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_MOBILES = 5000
MAX_PERSONALIZED = 999
MAX_PULL = 1000
#: The simulated account's service code; with the extension code it may not exceed 20 digits.
SERVICE_CODE = "1065012345"
MAX_CODE_DIGITS = 20

INVALID_MESSAGE = "InvalidMessage"
BAD_CREDENTIALS = "InvalidUsrOrPwd"
BAD_MAC = "IllegalMac"
BAD_SIGN = "IllegalSignId"
NO_SIGN = "NoSignId"
TOO_MANY = "TooManyMobiles"

SUBMIT_FIELDS = ("ecName", "apId", "mobiles", "content", "sign", "addSerial", "mac")
TEMPLATE_FIELDS = ("ecName", "apId", "templateId", "mobiles", "params", "sign", "addSerial", "mac")
PULL_FIELDS = ("ecName", "apId", "secretKey")

Body = Mapping[str, str]


def _reply(rspcod: str, group: str = "") -> SimResponse:
    return SimResponse.json({"rspcod": rspcod, "msgGroup": group, "success": rspcod == "success"})


def _invalid_message(problem: str = "") -> SimResponse:
    return _reply(INVALID_MESSAGE)


_DOCUMENTED_MEDIA = media_type_check(CONTENT_TYPES, _invalid_message)


class CloudMasProtocol(VendorProtocol):
    """Base64 JSON bodies signed with a MAC, on HTTPS (and its HTTP twin); pulls paced per account."""

    vendor = "cloud_mas"
    https = True
    push_kinds = frozenset()  # the document describes no push
    #: "在获取状态报告和上行短息请求5秒钟内只能请求一次"
    paced_paths = frozenset({"/sms/report", "/sms/deliver"})

    def routes(self) -> dict[tuple[str, str], Handler]:
        """The HTTPS interface of the document."""
        return {("POST", "/sms/submit"): self._decoded(SUBMIT_FIELDS, self.submit), **self._shared_routes()}

    def plain_http_routes(self) -> dict[tuple[str, str], Handler]:
        """The HTTP interface: ``/sms/norsubmit`` takes the submit body."""
        return {("POST", "/sms/norsubmit"): self._decoded(SUBMIT_FIELDS, self.submit), **self._shared_routes()}

    def _shared_routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("POST", "/sms/tmpsubmit"): self._decoded(TEMPLATE_FIELDS, self.tmpsubmit),
            ("POST", "/sms/report"): self._decoded(PULL_FIELDS, self.report),
            ("POST", "/sms/deliver"): self._decoded(PULL_FIELDS, self.deliver),
        }

    def _decoded(self, fields: tuple[str, ...], endpoint: Callable[[Body], SimResponse]) -> Handler:
        """Base64 of a JSON object holding every documented field as a string, or ``InvalidMessage``."""

        def read(request: SimRequest) -> Body:
            try:
                text = base64.b64decode(_unquoted(request.body.strip()), validate=True).decode("utf-8")
                body = json.loads(text)
            except (binascii.Error, ValueError):
                raise BadRequest("not base64 of JSON") from None
            if not isinstance(body, Mapping) or not all(isinstance(body.get(name), str) for name in fields):
                raise BadRequest("not an object of the documented string fields")
            return body

        return self.route(endpoint, read, _invalid_message, _DOCUMENTED_MEDIA)

    # ------------------------------------------------------------------ checks shared by the sends

    def _check_signed(self, body: Body, mac_fields: tuple[str, ...]) -> SimResponse | None:
        account = self.account
        if body["ecName"] != account.extra["ec_name"] or body["apId"] != account.login:
            return _reply(BAD_CREDENTIALS)
        values = [body[name] for name in mac_fields[:2]] + [account.secret] + [body[name] for name in mac_fields[2:]]
        if body["mac"] != md5_hex("".join(values)):
            return _reply(BAD_MAC)
        if not body["sign"]:
            return _reply(NO_SIGN)
        if body["sign"] != account.extra["sign"]:
            return _reply(BAD_SIGN)
        add_serial = body["addSerial"]
        digits = add_serial.isascii() and add_serial.isdigit()
        if add_serial and not (digits and len(SERVICE_CODE) + len(add_serial) <= MAX_CODE_DIGITS):
            return _reply(INVALID_MESSAGE)
        return None

    @staticmethod
    def _mobiles(text: str) -> tuple[list[str] | None, SimResponse | None]:
        mobiles = text.split(",")
        if len(mobiles) > MAX_MOBILES:
            return None, _reply(TOO_MANY)
        if any(normalize_domestic(m) != m for m in mobiles):
            return None, _reply(INVALID_MESSAGE)
        return mobiles, None

    def _accept(self, messages: list[tuple[str, str]], ext_no: str) -> SimResponse:
        signature = f"【{self.account.extra['ec_name']}】"
        batch_id = self.gateway.next_batch_id()
        self.gateway.accept(self.vendor, batch_id, ((m, signature + text) for m, text in messages), ext_no)
        return _reply("success", batch_id)

    # ------------------------------------------------------------------ endpoints

    def submit(self, body: Body) -> SimResponse:
        error = self._check_signed(body, SUBMIT_FIELDS[:-1])
        if error:
            return error
        if body["mobiles"] == "":
            return self._submit_personalized(body)
        mobiles, error = self._mobiles(body["mobiles"])
        if error:
            return error
        assert mobiles is not None
        if not body["content"].strip():
            return _reply(INVALID_MESSAGE)
        return self._accept([(m, body["content"]) for m in mobiles], body["addSerial"])

    def _submit_personalized(self, body: Body) -> SimResponse:
        try:
            texts = json.loads(body["content"])
        except ValueError:
            return _reply(INVALID_MESSAGE)
        if not isinstance(texts, dict) or not texts:
            return _reply(INVALID_MESSAGE)
        if len(texts) > MAX_PERSONALIZED:
            return _reply(TOO_MANY)
        for mobile, text in texts.items():
            if normalize_domestic(mobile) != mobile or not isinstance(text, str) or not text.strip():
                return _reply(INVALID_MESSAGE)
        return self._accept(list(texts.items()), body["addSerial"])

    def tmpsubmit(self, body: Body) -> SimResponse:
        error = self._check_signed(body, TEMPLATE_FIELDS[:-1])
        if error:
            return error
        if not body["templateId"].strip() or not body["mobiles"]:
            return _reply(INVALID_MESSAGE)
        mobiles, error = self._mobiles(body["mobiles"])
        if error:
            return error
        assert mobiles is not None
        try:
            params = json.loads(body["params"])
        except ValueError:
            return _reply(INVALID_MESSAGE)
        if not isinstance(params, list) or not params or not all(isinstance(p, str) for p in params):
            return _reply(INVALID_MESSAGE)
        text = f"模板{body['templateId']}:" + ",".join(params)
        return self._accept([(m, text) for m in mobiles], body["addSerial"])

    def _pull(self, body: Body, take: Callable[[], list[dict[str, Any]]]) -> SimResponse:
        account = self.account
        if (body["ecName"], body["apId"], body["secretKey"]) != (
            account.extra["ec_name"],
            account.login,
            account.secret,
        ):
            return _reply(BAD_CREDENTIALS)
        return SimResponse.json(take())

    def report(self, body: Body) -> SimResponse:
        def take() -> list[dict[str, Any]]:
            return [
                {
                    "reportStatus": "DELIVRD" if m.delivered else "UNDELIV",
                    "mobile": m.mobile,
                    "submitDate": vendor_time(m.submitted_at, REPORT_TIME_FORMAT),
                    "receiveDate": vendor_time(m.report_at, REPORT_TIME_FORMAT),
                    "errorCode": "DELIVRD" if m.delivered else "DB:0140",
                    "msgGroup": m.batch_id,
                }
                for m in self.gateway.take_reports(self.vendor, limit=MAX_PULL)
            ]

        return self._pull(body, take)

    def deliver(self, body: Body) -> SimResponse:
        def take() -> list[dict[str, Any]]:
            return [
                {
                    "smsContent": m.content,
                    "mobile": m.mobile,
                    "sendTime": vendor_time(m.received_at, INBOUND_TIME_FORMAT),
                    "addSerial": m.ext_no,
                }
                for m in self.gateway.take_inbound(self.vendor, limit=MAX_PULL)
            ]

        return self._pull(body, take)


def _unquoted(body: bytes) -> bytes:
    """The base64 text of a body sent as a JSON string (``"eyJ..."``), or the body as it is."""
    if not body.startswith(b'"'):
        return body
    text = json.loads(body.decode("utf-8"))  # ValueError (UnicodeDecodeError too) -> InvalidMessage
    if not isinstance(text, str):
        raise ValueError("not a JSON string")
    return text.encode("ascii")  # UnicodeEncodeError is a ValueError
