"""The grammar of HTTP fields both layers above need: header names and values, status codes.

Rules of this module: pure (standard library only); what is a valid token or status is decided
here once, for option checks (``options.py``), the stored-bytes codec and the parsers alike.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["NOT_IN_FIELD_VALUE", "TOKEN", "is_status"]

TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name (RFC 9110 §5.6.2)
# A character no field value holds (RFC 9110 §5.5: visible characters, obs-text, SP and HTAB).
NOT_IN_FIELD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def is_status(value: Any) -> bool:
    """An HTTP status code, 100 to 599 (RFC 9110 §15): the one range the package accepts, in
    options and in stored bytes alike (a response outside it is never stored).

    >>> is_status(200), is_status(600), is_status(True)
    (True, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599
