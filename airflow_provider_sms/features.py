"""What a vendor's API offers, named once: the feature names hooks answer ``supports`` for, and how a vendor
hands out delivery reports.

Its own module, with no imports, so that the operators and the push receiver use the names at DAG parse
time without loading the hooks (``requests``, ``tenacity``); ``hooks.base`` re-exports them.
"""

from __future__ import annotations

from typing import Final

SEND: Final = "send"
SEND_TEMPLATE: Final = "send_template"
REPORTS: Final = "reports"
INBOUND: Final = "inbound"
BALANCE: Final = "balance"

# How a vendor hands out delivery reports (``SmsHook.report_mode``): each pull of a queue hands out pending
# reports once; a query asks for the reports of given (batch id, mobile) pairs.
QUEUE: Final = "queue"
QUERY: Final = "query"
