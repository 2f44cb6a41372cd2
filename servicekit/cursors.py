"""Opaque cursors for keyset pagination (BRIEF §6: lists use cursors, never OFFSET).

A cursor is the sort key of the last item of a page, as base64url-encoded JSON. Clients treat it
as opaque; the server checks it like any other input, so a forged cursor can at most start a
page of the caller's own list somewhere else, and a malformed one is a 422 ``invalid_cursor``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, Final

from servicekit.errors import ValidationFailed

MAX_CURSOR_LENGTH: Final = 512  # characters; a cursor holds a few keys


def encode_cursor(position: Mapping[str, str | int]) -> str:
    """An opaque cursor for the page that starts after ``position``."""
    raw = json.dumps(dict(position), separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, *, keys: Mapping[str, type]) -> dict[str, Any]:
    """The position in ``cursor``: exactly ``keys``, each of its type; 422 otherwise."""
    try:
        if len(cursor) > MAX_CURSOR_LENGTH or not cursor.isascii():
            raise ValueError("cursor too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise _invalid_cursor() from error
    if not isinstance(position, dict) or set(position) != set(keys):
        raise _invalid_cursor()
    for name, expected in keys.items():
        value = position[name]
        if type(value) is not expected or (isinstance(value, str) and "\x00" in value):
            raise _invalid_cursor()
    return position


def _invalid_cursor() -> ValidationFailed:
    return ValidationFailed(
        "The cursor is not valid.",
        errors=[{"field": "cursor", "message": "Use a next_cursor from a previous page."}],
        code="invalid_cursor",
    )
