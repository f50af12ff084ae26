"""Secrets in every form they can take on the wire, kept out of error messages and logs.

A secret reaches text in more forms than the one Airflow's masker knows: URL-encoded in a query
string (paasw_v1 sends its secret and token in GET URLs, and an HTML error page may echo the URL), or
as its MD5 (intl and account_md5 send digests of the password). Every form of every secret a hook
uses is registered here and with Airflow's masker, and ``redact`` removes them from any reply body
quoted in an error.
"""

from __future__ import annotations

import hashlib
import re
import threading
from urllib.parse import quote, quote_plus

#: shorter values are not redacted from text: they would match ordinary words and digits
MIN_SECRET_CHARS = 4
REDACTED = "***"
#: query parameter names whose values are credentials whatever their case (``secret``, ``Secret``, ``appToken``)
SENSITIVE_PARAM = re.compile(r"secret|token|pass|key|sign|auth", re.IGNORECASE)

_lock = threading.Lock()
_forms: set[str] = set()
_pattern: re.Pattern[str] | None = None


def secret_forms(secret: str) -> set[str]:
    """The secret as sent raw, URL-encoded (both encodings) and as an MD5 digest (both cases)."""
    digest = hashlib.md5(secret.encode("utf-8")).hexdigest()
    return {secret, quote(secret, safe=""), quote_plus(secret), digest, digest.upper()}


def remember(secret: str) -> set[str]:
    """Remember every form of ``secret`` for ``redact``; returns the forms (for Airflow's masker)."""
    global _pattern
    forms = {form for form in secret_forms(secret) if len(form) >= MIN_SECRET_CHARS}
    with _lock:
        if not forms <= _forms:
            _forms.update(forms)
            # longest first, so that a form containing another is removed whole
            ordered = sorted(_forms, key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(form) for form in ordered))
    return forms


def redact(text: str) -> str:
    """``text`` with every remembered form of every secret replaced by ``***``."""
    pattern = _pattern
    return pattern.sub(REDACTED, text) if pattern is not None and text else text


__all__ = ["MIN_SECRET_CHARS", "REDACTED", "SENSITIVE_PARAM", "redact", "remember", "secret_forms"]
