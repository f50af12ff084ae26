"""The errors the provider raises.

Every message names the vendor and what went wrong in words a DAG author can act on, and never
carries a credential: messages are built from vendor codes, counts and the start of a reply body,
never from request payloads.
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_sms.redaction import redact

BODY_PREVIEW_CHARS = 200


def body_preview(body: str | bytes) -> str:
    """The start of a reply body, on one line, for error messages."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    text = redact(" ".join(body.split()))
    return text if len(text) <= BODY_PREVIEW_CHARS else text[:BODY_PREVIEW_CHARS] + "…"


class SmsError(AirflowException):
    """Base class of every error this provider raises."""


class SmsConfigurationError(SmsError):
    """The Airflow connection lacks a field or holds a value the vendor cannot take."""


class SmsInvalidRequestError(SmsError, ValueError):
    """The caller's input cannot be sent; detected before anything goes out."""


class SmsInvalidNumbersError(SmsInvalidRequestError):
    """Some numbers are not valid for this vendor; nothing was sent.

    A number that knows why it is invalid (``numbers.InvalidNumber``, intl's numbers checked with
    ``phonenumbers``) is followed by its reason: ``'+44 20 7946 0958' is not a valid mobile number for
    United Kingdom (GB): it is a fixed-line number, which cannot receive SMS``.
    """

    def __init__(self, vendor: str, invalid: Sequence[str], total: int) -> None:
        self.vendor = vendor
        self.invalid = list(invalid)
        reasons = [getattr(n, "reason", "") for n in self.invalid[:20]]
        shown = ("; " if any(reasons) else ", ").join(
            f"{n!r} {reason}" if reason else repr(n) for n, reason in zip(self.invalid[:20], reasons, strict=True)
        )
        more = f" and {len(self.invalid) - 20} more" if len(self.invalid) > 20 else ""
        super().__init__(
            f"{vendor}: {len(self.invalid)} of {total} mobile numbers are invalid: {shown}{more}; nothing was sent"
        )


class SmsPlanChangedError(SmsInvalidRequestError):
    """A retry was given other numbers, text or options than the send plan its first try stored.

    Nothing was sent in that try. Each retry executes the stored plan, so that no request's identity
    changes between tries; a changed input is a new plan only when the author says so.
    """


class SmsNotSupportedError(SmsError, NotImplementedError):
    """The vendor's API has no such feature."""

    def __init__(self, vendor: str, feature: str) -> None:
        self.vendor = vendor
        self.feature = feature
        super().__init__(f"{vendor} does not support {feature}")


class SmsVendorError(SmsError):
    """The vendor answered with an error code: it did not act on the request."""

    def __init__(self, vendor: str, code: str, message: str = "", meaning: str = "", operation: str = "") -> None:
        self.vendor = vendor
        self.code = str(code)
        self.vendor_message = message
        self.meaning = meaning
        self.operation = operation
        parts = [f"{vendor} rejected {operation or 'the request'}: code {self.code}"]
        if meaning:
            parts.append(f"({meaning})")
        if message and message != meaning:
            parts.append(f"- vendor says: {message}")
        super().__init__(" ".join(parts))


class SmsInsufficientBalanceError(SmsError):
    """The account's balance cannot pay for the send: found before anything went out (``check_balance``), or
    the vendor refused a request mid-send for it. ``summary`` is the send's summary where requests were
    sent (what was accepted, how many numbers were not sent); a retry after a top-up sends the rest."""

    def __init__(self, message: str, summary: dict[str, object] | None = None) -> None:
        self.summary = summary
        super().__init__(message)


class SmsCanaryFailedError(SmsError, AirflowFailException):
    """A canary send's numbers were not delivered enough: the rest of the send was not sent.

    It fails the task **without retries**: a retry would judge the same canary the same way. ``canary``
    holds the counts (numbers, delivered, failed, pending, share, by vendor code); clearing the task with a
    lower ``canary_min_delivered`` judges the same canary again, and sends the rest if it passes.
    """

    def __init__(self, message: str, canary: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.canary = canary or {}


class SmsConcurrentSendError(SmsError):
    """Another try of the same task instance is sending the same plan (a try Airflow took for dead, and its
    retry): a request this try was about to send was claimed by the other first, so this try stops and
    leaves the plan to it. Nothing was sent twice; a later retry finishes what neither sent."""


class SmsCostLimitError(SmsInvalidRequestError):
    """The send's estimated cost is above the author's ``max_cost``; nothing was sent."""


class SmsResponseError(SmsError):
    """The reply was not what the vendor's document promises (HTML, not JSON, a missing field, ...)."""

    def __init__(self, vendor: str, operation: str, problem: str, status: int | None = None, body: str = "") -> None:
        self.vendor = vendor
        self.operation = operation
        self.problem = problem
        self.status = status
        self.body = body_preview(body)
        status_text = f"HTTP {status}" if status is not None else "no HTTP status"
        super().__init__(
            f"{vendor} {operation}: {problem} ({status_text}; body starts: {self.body!r})"
            if body
            else f"{vendor} {operation}: {problem} ({status_text})"
        )


class SmsPartialResponseError(SmsResponseError):
    """Some records of a pull could not be read; ``records`` holds the ones that could.

    Queue vendors hand each record out once, so callers store ``records`` (and log ``rejected``,
    the vendor's raw items with the reason) before failing: nothing is dropped silently.
    """

    def __init__(
        self,
        vendor: str,
        operation: str,
        what: str,
        records: Sequence[object],
        rejected: Sequence[tuple[object, str]],
    ) -> None:
        self.records = list(records)
        self.rejected = list(rejected)
        first_item, first_reason = self.rejected[0]
        super().__init__(
            vendor,
            operation,
            f"{len(self.rejected)} of {len(self.records) + len(self.rejected)} records are malformed; "
            f"first: bad {what} {body_preview(repr(first_item))}: {first_reason}",
        )


class SmsTransportError(SmsError):
    """The vendor could not be reached, or kept failing after every retry."""


class SmsOutcomeUnknownError(SmsError):
    """A send request may have reached the vendor but no clear answer came back.

    The numbers may or may not receive the message; resending risks a double send, so the provider
    never retries such a request by itself.
    """

    def __init__(self, vendor: str, description: str, mobiles: Sequence[str], cause: str) -> None:
        self.vendor = vendor
        self.description = description
        self.mobiles = tuple(mobiles)
        self.cause = cause
        super().__init__(
            f"{vendor}: outcome of {description} ({len(self.mobiles)} numbers) is unknown: {cause}. "
            "The vendor may have accepted it; it was not resent to avoid a double send"
        )
