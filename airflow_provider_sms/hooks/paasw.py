"""What the two PaaSW gateway versions share: a token from appId + secret, sent with every other call.

Both documents issue a token (``token``, ``expires_in`` seconds, 7200 when absent) for the appId and
secret, and list no error codes, so any error reply on a cached token triggers one refresh. Each version
says how its calls look (``_call``, ``_response``) and where a reply keeps its data (``_data_of``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import requests

from airflow_provider_sms.errors import SmsVendorError
from airflow_provider_sms.hooks.base import FEATURE_LABELS, PULL_OPERATIONS, SendRequest, SmsHook
from airflow_provider_sms.records import Balance

TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
#: a 【signature】 anywhere in the text: both documents ask that the content contain one (包含), not where
SIGNATURE: Final = re.compile(r"【[^【】]+】")
#: a token's lifetime when the reply does not give one, seconds
DEFAULT_TOKEN_SECONDS: Final = 7200


class PaaswHook(SmsHook):
    """Base of ``PaaswV2Hook`` and ``PaaswV1Hook``: login is the appId, password the secret."""

    max_numbers_per_request = 1000
    features = frozenset(FEATURE_LABELS)  # every one: send, templates, both queues, balance
    #: neither document lists error codes (v1's says 待更新): none is known to mean an insufficient balance, so
    #: a refusal mid-send stops the send like any refusal (the error shows the code and the vendor's message)
    insufficient_balance_codes: ClassVar[frozenset[str]] = frozenset()

    def _call(
        self,
        call: str,
        payload: Mapping[str, Any],
        operation: str,
        *,
        send: SendRequest | None = None,
        quote_body: bool = True,
    ) -> Any:
        """One call and its checked reply; ``quote_body=False`` keeps the reply out of error messages (the
        token reply holds the token)."""
        return self._reply(self._response(call, payload, operation, send=send), operation, quote_body=quote_body)

    # ------------------------------------------------------------------ what a version implements

    def _response(
        self, call: str, payload: Mapping[str, Any], operation: str, *, send: SendRequest | None = None
    ) -> requests.Response:
        """One call's raw response (a pull's is kept before it is read)."""
        raise NotImplementedError

    def _reply(self, response: requests.Response, operation: str, *, quote_body: bool = True) -> Any:
        """The reply, checked: an error code raises ``SmsVendorError``."""
        raise NotImplementedError

    def _data_of(self, reply: Any, operation: str) -> Any:
        """Where a checked reply keeps its fields (v2: under ``data``; v1: the reply itself)."""
        return reply

    def _pull_payload(self, kind: str) -> dict[str, str]:
        """Fields a pull of ``kind`` sends besides the token."""
        return {}

    # ------------------------------------------------------------------ the token

    def _fetch_token(self) -> tuple[str, float]:
        app_id, secret = self.require_login_and_password("App ID (login)", "secret (password)")
        operation = "token request"
        reply = self._call("token", {"appId": app_id, "secret": secret}, operation, quote_body=False)
        data = self._data_of(reply, operation)
        token = self.field(data, "token", operation)
        if not isinstance(token, str) or not token.strip():
            raise self.bad_reply(operation, f"'token' should be a non-empty string, got {type(token).__name__}")
        expires_in = data.get("expires_in") or DEFAULT_TOKEN_SECONDS
        try:
            return token, float(expires_in)
        except (TypeError, ValueError, ArithmeticError):
            raise self.bad_reply(operation, f"'expires_in' {expires_in!r} is not a number of seconds") from None

    def _with_token(
        self, call: str, payload: Mapping[str, Any], operation: str, *, send: SendRequest | None = None
    ) -> Any:
        """``call`` with the cached token; no error code is documented, so any error refreshes it once."""
        return self.with_token(
            lambda token: self._call(call, {"token": token, **payload}, operation, send=send),
            is_token_error=lambda exc: True,
        )

    # ------------------------------------------------------------------ interface

    def _pull_records(self, kind: str) -> list[Mapping[str, Any]]:
        payload, operation = self._pull_payload(kind), PULL_OPERATIONS[kind]
        return self.with_token(
            lambda token: self._records_in_reply(kind, self._response(kind, {"token": token, **payload}, operation)),
            is_token_error=lambda exc: True,
        )

    def _get_balance(self) -> Balance:
        operation = "balance query"
        data = self._data_of(self._with_token("balance", {}, operation), operation)
        amount = self.balance_amount(self.field(data, "balance", operation), operation)
        return Balance(self.vendor, amount, "", raw=data)

    def _check_connection(self) -> str:
        try:
            self._new_token(self._token_key())
        except SmsVendorError as exc:
            raise SmsVendorError(
                exc.vendor, exc.code, exc.vendor_message, "appId or secret rejected", exc.operation
            ) from None
        return f"token issued for appId {self.config.login} at {self.config.base_url}"


__all__ = ["SIGNATURE", "TIME_FORMAT", "PaaswHook"]
