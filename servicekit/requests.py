"""Reading what a client sent: JSON bodies, their fields, query parameters and path ids.

Every value from outside passes through here before a service acts on it. A problem becomes a
``ParleyError`` with a stable code; field problems are collected so one answer names them all::

    body = await read_json_object(request)
    fields = Fields(body, allowed={"title", "member_ids"})
    title = fields.text("title", max_length=200)
    member_ids = fields.identifier_list("member_ids", max_items=100)
    fields.finish()  # ValidationFailed (422) naming every bad field, or nothing

Text is checked for what breaks storage or display: NUL (PostgreSQL text cannot hold it), lone
UTF-16 surrogates (JSON ``\\ud800`` escapes decode to them, and they cannot be encoded as UTF-8)
and, in single-line values, control characters. Lengths count code points, as users see them.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Final, NoReturn

from starlette.requests import Request

from servicekit.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)

# Bytes. A request body larger than this is refused before it is parsed.
DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024
# Characters. Ids of people and machines come from the provider's ``sub`` (plus a prefix).
MAX_IDENTIFIER_LENGTH: Final = 255

_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 and C1 controls except tab, newline and carriage return; DEL too.
_MULTI_LINE_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SINGLE_LINE_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


async def read_json_object(
    request: Request, *, max_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> dict[str, Any]:
    """The request's body as a JSON object; 415, 413 or 400 when it is not one."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise UnsupportedMediaType("Send the body as application/json.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"The body may be at most {max_bytes} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"The body may be at most {max_bytes} bytes.")
    try:
        document = json.loads(bytes(body), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as error:
        raise BadRequest("The body is not valid JSON.", code="malformed_json") from error
    if not isinstance(document, dict):
        raise BadRequest("The body must be a JSON object.", code="malformed_json")
    return document


def text_problem(value: str, *, single_line: bool) -> str | None:
    """Why ``value`` cannot be stored as given, or None when it can."""
    if "\x00" in value:
        return "Must not contain NUL characters."
    if _SURROGATE.search(value):
        return "Must be valid Unicode (no lone surrogates)."
    forbidden = _SINGLE_LINE_FORBIDDEN if single_line else _MULTI_LINE_FORBIDDEN
    if forbidden.search(value):
        return "Must not contain control characters."
    return None


def parse_uuid(value: object) -> uuid.UUID | None:
    """``value`` as a UUID when it is one written in the canonical hyphenated form."""
    if not isinstance(value, str) or len(value) != 36:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def path_uuid(request: Request, name: str, *, what: str = "resource") -> uuid.UUID:
    """The path parameter ``name`` as a UUID; 404 otherwise (it names nothing that exists)."""
    parsed = parse_uuid(request.path_params.get(name))
    if parsed is None:
        raise NotFound(f"There is no such {what}.", code=f"{what.replace(' ', '_')}_not_found")
    return parsed


def identifier_problem(value: object) -> str | None:
    """Why ``value`` is not a principal id (a user's ``sub`` or ``machine:<sub>``), or None."""
    if not isinstance(value, str) or not value:
        return "Must be a non-empty string."
    if len(value) > MAX_IDENTIFIER_LENGTH:
        return f"At most {MAX_IDENTIFIER_LENGTH} characters."
    if value != value.strip() or any(character.isspace() for character in value):
        return "Must not contain whitespace."
    return text_problem(value, single_line=True)


class Fields:
    """Reads the fields of a JSON object, collecting a problem for each bad one."""

    def __init__(self, body: Mapping[str, Any], *, allowed: Collection[str]) -> None:
        self.body = body
        self.errors: list[dict[str, str]] = [
            {"field": name, "message": "Unknown field."}
            for name in sorted(set(body) - set(allowed))
        ]

    def add_error(self, field: str, message: str) -> None:
        self.errors.append({"field": field, "message": message})

    def present(self, name: str) -> bool:
        return name in self.body

    def _missing(self, name: str, required: bool) -> bool:
        if name in self.body and self.body[name] is not None:
            return False
        if required:
            self.add_error(name, "Required.")
        return True

    def text(
        self,
        name: str,
        *,
        required: bool = False,
        max_length: int,
        min_length: int = 0,
        single_line: bool = True,
        strip: bool = True,
    ) -> str | None:
        """A string of ``min_length``..``max_length`` code points (after stripping, if asked)."""
        if self._missing(name, required):
            return None
        value = self.body[name]
        if not isinstance(value, str):
            self.add_error(name, "Must be a string.")
            return None
        if strip:
            value = value.strip()
        problem = text_problem(value, single_line=single_line)
        if problem is None and not min_length <= len(value) <= max_length:
            problem = (
                f"Must be {min_length} to {max_length} characters."
                if min_length
                else f"At most {max_length} characters."
            )
        if problem is not None:
            self.add_error(name, problem)
            return None
        return value

    def identifier(self, name: str, *, required: bool = False) -> str | None:
        """A principal id: a user's ``sub`` or a machine client's ``machine:<sub>``."""
        if self._missing(name, required):
            return None
        value = self.body[name]
        problem = identifier_problem(value)
        if problem is not None:
            self.add_error(name, problem)
            return None
        return str(value)

    def identifier_list(
        self, name: str, *, required: bool = False, min_items: int = 0, max_items: int
    ) -> list[str] | None:
        """A list of distinct principal ids."""
        if self._missing(name, required):
            return None
        values = self.body[name]
        if not isinstance(values, list):
            self.add_error(name, "Must be a list of ids.")
            return None
        if not min_items <= len(values) <= max_items:
            self.add_error(name, f"Must hold {min_items} to {max_items} ids.")
            return None
        for index, value in enumerate(values):
            problem = identifier_problem(value)
            if problem is not None:
                self.add_error(f"{name}[{index}]", problem)
                return None
        if len(set(values)) != len(values):
            self.add_error(name, "Must not name anyone twice.")
            return None
        return list(values)

    def uuid(self, name: str, *, required: bool = False) -> uuid.UUID | None:
        if self._missing(name, required):
            return None
        parsed = parse_uuid(self.body[name])
        if parsed is None:
            self.add_error(name, "Must be a UUID.")
        return parsed

    def integer(
        self, name: str, *, required: bool = False, minimum: int, maximum: int
    ) -> int | None:
        if self._missing(name, required):
            return None
        value = self.body[name]
        if type(value) is not int or not minimum <= value <= maximum:
            self.add_error(name, f"Must be an integer from {minimum} to {maximum}.")
            return None
        return value

    def choice(self, name: str, choices: Iterable[str], *, required: bool = False) -> str | None:
        allowed = tuple(choices)
        if self._missing(name, required):
            return None
        value = self.body[name]
        if value not in allowed:
            self.add_error(name, f"Must be one of: {', '.join(allowed)}.")
            return None
        return str(value)

    def finish(self, detail: str = "The request is not valid.") -> None:
        """Raise ``ValidationFailed`` naming every problem found so far."""
        if self.errors:
            raise ValidationFailed(detail, errors=self.errors)


def query_integer(
    request: Request, name: str, *, default: int | None, minimum: int, maximum: int
) -> int | None:
    """The query parameter ``name`` as an integer in range; 422 otherwise."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"-?[0-9]{1,19}", raw) or not minimum <= int(raw) <= maximum:
        raise ValidationFailed(
            f"'{name}' is not valid.",
            errors=[{"field": name, "message": f"An integer from {minimum} to {maximum}."}],
        )
    return int(raw)


def query_text(request: Request, name: str, *, max_length: int) -> str | None:
    """The query parameter ``name`` as single-line text; 422 when too long or malformed."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    problem = text_problem(raw, single_line=True)
    if problem is None and len(raw) > max_length:
        problem = f"At most {max_length} characters."
    if problem is not None:
        raise ValidationFailed(
            f"'{name}' is not valid.", errors=[{"field": name, "message": problem}]
        )
    return raw
