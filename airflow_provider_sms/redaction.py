"""Secrets in every form they can take on the wire, kept out of error messages and logs.

A secret reaches text in more forms than the one Airflow's masker knows: URL-encoded in a query
string (paasw_v1 sends its secret and token in GET URLs, and an HTML error page may echo the URL), or
as its MD5 (intl and account_md5 send digests of the password). Every form of every secret a hook
uses is registered here and with Airflow's masker, and ``redact`` removes them from any reply body
quoted in an error.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from urllib.parse import quote, quote_plus

#: shorter values are not redacted from text: they would match ordinary words and digits
MIN_SECRET_CHARS = 4
REDACTED = "***"
#: query parameter names whose values are credentials whatever their case (``secret``, ``Secret``, ``appToken``)
SENSITIVE_PARAM = re.compile(r"secret|token|pass|key|sign|auth", re.IGNORECASE)

_lock = threading.Lock()
_forms: set[str] = set()
#: compiled at the first ``redact`` after a new form: remembering costs nothing on a send's path, however many
#: per-request digests it remembers (compiling at every one made 200 requests spend seconds)
_pattern: re.Pattern[str] | None = None
_stale = False


def secret_forms(secret: str) -> set[str]:
    """The secret as sent raw, URL-encoded (both encodings) and as an MD5 digest (both cases)."""
    digest = hashlib.md5(secret.encode("utf-8")).hexdigest()
    return {secret, quote(secret, safe=""), quote_plus(secret), digest, digest.upper()}


def remember(secret: str) -> set[str]:
    """Remember every form of ``secret`` for ``redact``; returns the forms (for Airflow's masker)."""
    forms = {form for form in secret_forms(secret) if len(form) >= MIN_SECRET_CHARS}
    _add(forms)
    return forms


def remember_digest(digest: str) -> None:
    """Remember a per-request digest of a secret (cloud_mas's MAC) for ``redact``, as written and upper-cased.

    It is never URL-encoded or digested again on the wire, so its other forms are not needed."""
    _add({form for form in (digest, digest.upper()) if len(form) >= MIN_SECRET_CHARS})


def _add(forms: set[str]) -> None:
    global _stale
    with _lock:
        if not forms <= _forms:
            _forms.update(forms)
            _stale = True


#: Airflow's secrets masker (the Task SDK's copy and the core one): it is handed every extra of a connection
#: that is read, and warns "too short" about any short value before it looks at the extra's name, so a
#: signature "Acme" reads as a secret Airflow failed to hide.
_MASKER_MODULES = (
    "airflow.sdk._shared.secrets_masker.secrets_masker",
    "airflow._shared.secrets_masker.secrets_masker",
)
SHORT_VALUE_WARNING = "Skipping masking for a secret as it's too short"
_quiet: ContextVar[bool] = ContextVar("sms_short_values_unreported", default=False)


class _ShortValueFilter(logging.Filter):
    """Drops the masker's "too short" warning while this context reads a connection or registers a form."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_quiet.get() and str(record.msg).startswith(SHORT_VALUE_WARNING))


_FILTER = _ShortValueFilter()


@contextmanager
def short_values_unreported() -> Iterator[None]:
    """Silence the masker's "too short" warning in this context (the hook names its own short secrets instead).

    The masker warns once per process; that flag is put back as it was, so a short secret that some
    other code registers later is still reported by Airflow.
    """
    warned_before = {
        name: bool(getattr(_masker_class(name), "_has_warned_short_secret", False)) for name in _MASKER_MODULES
    }
    for name in _MASKER_MODULES:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    token = _quiet.set(True)
    try:
        yield
    finally:
        _quiet.reset(token)
        for name, before in warned_before.items():
            cls = _masker_class(name)  # also one imported meanwhile: it started unwarned
            if cls is not None and not before:
                setattr(cls, "_has_warned_short_secret", False)  # noqa: B010 (a private flag of Airflow's)


def _masker_class(module: str) -> type | None:
    masker: type | None = getattr(sys.modules.get(module), "SecretsMasker", None)
    return masker


def redact(text: str) -> str:
    """``text`` with every remembered form of every secret replaced by ``***``."""
    if not text:
        return text
    pattern = _current_pattern()
    return pattern.sub(REDACTED, text) if pattern is not None else text


def _current_pattern() -> re.Pattern[str] | None:
    global _pattern, _stale
    with _lock:
        if _stale:
            # longest first, so that a form containing another is removed whole
            ordered = sorted(_forms, key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(form) for form in ordered))
            _stale = False
        return _pattern


__all__ = [
    "MIN_SECRET_CHARS",
    "REDACTED",
    "SENSITIVE_PARAM",
    "SHORT_VALUE_WARNING",
    "redact",
    "remember",
    "remember_digest",
    "secret_forms",
    "short_values_unreported",
]
