"""The API allowlist: which method and path the BFF forwards, and to which service.

Nothing outside ``API_ROUTES`` is forwarded. A request path is matched in its raw, still
percent-encoded form, segment by segment, against whole templates, so
``/api/conversations/{id}/messages`` (messages_service) and ``/api/conversations/{id}/members``
(conversations_service) cannot be confused, and a service receives byte for byte the path that
was checked here. Before matching,
``split_api_path`` rejects every path that a server or framework further on could read differently
from this table: dot segments, encoded slashes and backslashes, empty segments, control characters,
and request targets that are not a plain absolute path.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote_to_bytes

from servicekit.errors import BadRequest, MethodNotAllowed, NotFound

IDENTITY: Final = "identity_service"
CONVERSATIONS: Final = "conversations_service"
MESSAGES: Final = "messages_service"
REALTIME: Final = "realtime_service"
SERVICES: Final = (IDENTITY, CONVERSATIONS, MESSAGES, REALTIME)

# Bytes of UTF-8 once percent-decoded; the longest emoji ZWJ sequences take about 35.
MAX_EMOJI_BYTES: Final = 64

# RFC 3986 path-absolute: segments of unreserved characters, sub-delims, ":", "@" and well-formed
# percent-escapes. This alone keeps out backslashes, spaces, raw control and non-ASCII bytes, and
# absolute-form ("http://host/…") or asterisk-form targets.
_RAW_PATH: Final = re.compile(r"(?:/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*)+")
_DECODED_FORBIDDEN: Final = re.compile(rb"[\x00-\x1f\x7f/\\]")
_UUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def _invalid_path(reason: str) -> BadRequest:
    return BadRequest(f"The request path {reason}.", code="invalid_path")


def split_api_path(raw_path: str) -> tuple[str, ...]:
    """The raw segments of ``raw_path``; ``BadRequest`` (``invalid_path``) unless it is plain."""
    if not _RAW_PATH.fullmatch(raw_path):
        raise _invalid_path("is not a plain absolute path")
    segments = tuple(raw_path[1:].split("/"))
    for segment in segments:
        decoded = unquote_to_bytes(segment)
        if not decoded:
            raise _invalid_path("has an empty segment")
        if decoded in (b".", b".."):
            raise _invalid_path("has a dot segment")
        if _DECODED_FORBIDDEN.search(decoded):
            raise _invalid_path("has an encoded slash, backslash or control character")
    return segments


def _is_uuid(segment: str) -> bool:
    return _UUID.fullmatch(segment) is not None


def _is_emoji(segment: str) -> bool:
    """Short UTF-8 text; which emoji exist is messages_service's business."""
    decoded = unquote_to_bytes(segment)
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return len(decoded) <= MAX_EMOJI_BYTES


# Every path parameter by name: how its raw segment is checked, and what it must be.
PARAMETERS: Final[Mapping[str, tuple[Callable[[str], bool], str]]] = {
    "id": (_is_uuid, "a UUID"),
    "user_id": (_is_uuid, "a UUID"),
    "emoji": (_is_emoji, f"UTF-8 text of at most {MAX_EMOJI_BYTES} bytes"),
}


def _parameter_name(template_segment: str) -> str | None:
    if template_segment.startswith("{") and template_segment.endswith("}"):
        return template_segment[1:-1]
    return None


@dataclass(frozen=True)
class ApiRoute:
    """Requests for ``path`` (a template, also the metrics label) with one of ``methods`` go to
    the service ``upstream``."""

    path: str
    methods: frozenset[str]
    upstream: str
    segments: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        segments = tuple(self.path[1:].split("/"))
        for segment in segments:
            name = _parameter_name(segment)
            if name is not None and name not in PARAMETERS:
                raise ValueError(f"{self.path}: no check for the parameter {name!r}")
        object.__setattr__(self, "segments", segments)

    def has_shape_of(self, segments: tuple[str, ...]) -> bool:
        """Whether ``segments`` has this route's literal segments, whatever its parameters."""
        return len(segments) == len(self.segments) and all(
            _parameter_name(template) is not None or template == segment
            for template, segment in zip(self.segments, segments, strict=True)
        )

    def invalid_parameter(self, segments: tuple[str, ...]) -> str | None:
        """Why a parameter in ``segments`` (of this route's shape) is invalid, if one is."""
        for template, segment in zip(self.segments, segments, strict=True):
            name = _parameter_name(template)
            if name is not None:
                is_valid, requirement = PARAMETERS[name]
                if not is_valid(segment):
                    return f"{{{name}}} must be {requirement}"
        return None

    def require_method(self, method: str) -> None:
        """``MethodNotAllowed``, with ``Allow``, unless this route accepts ``method``."""
        if method not in self.methods:
            allowed = ", ".join(sorted(self.methods))
            raise MethodNotAllowed(
                f"{self.path} accepts {allowed}, not {method}.", headers={"Allow": allowed}
            )


class ApiRouteTable:
    """Finds the one route a request path belongs to."""

    def __init__(self, routes: Iterable[ApiRoute]) -> None:
        self.routes = tuple(routes)
        for first, second in itertools.combinations(self.routes, 2):
            if _can_overlap(first, second):
                raise ValueError(f"{first.path} and {second.path} can match the same path")

    def match(self, segments: tuple[str, ...]) -> ApiRoute:
        """The route for ``segments`` (from ``split_api_path``); ``NotFound`` if there is none."""
        for route in self.routes:
            if route.has_shape_of(segments):
                problem = route.invalid_parameter(segments)
                if problem is not None:
                    raise NotFound(f"No such resource: {problem}.")
                return route
        raise NotFound("No API route has this path.")


def _can_overlap(first: ApiRoute, second: ApiRoute) -> bool:
    return len(first.segments) == len(second.segments) and all(
        a == b or _parameter_name(a) is not None or _parameter_name(b) is not None
        for a, b in zip(first.segments, second.segments, strict=True)
    )


def _route(methods: str, path: str, upstream: str) -> ApiRoute:
    return ApiRoute(path, frozenset(methods.split()), upstream)


# The HTTP API of the brief (§6), plus invitation listing and revocation, delivery pointers
# and read receipts. Every path is matched whole, so the order does not matter.
API_ROUTES: Final[tuple[ApiRoute, ...]] = (
    _route("GET POST", "/api/conversations", CONVERSATIONS),
    _route("GET PATCH DELETE", "/api/conversations/{id}", CONVERSATIONS),
    _route("GET POST", "/api/conversations/{id}/members", CONVERSATIONS),
    _route("PATCH DELETE", "/api/conversations/{id}/members/{user_id}", CONVERSATIONS),
    _route("GET POST", "/api/conversations/{id}/invitations", CONVERSATIONS),
    _route("GET", "/api/invitations", CONVERSATIONS),
    _route("POST", "/api/invitations/{id}/accept", CONVERSATIONS),
    _route("POST", "/api/invitations/{id}/decline", CONVERSATIONS),
    _route("POST", "/api/invitations/{id}/revoke", CONVERSATIONS),
    # Under /api/conversations/{id}/, but owned by messages_service.
    _route("GET POST", "/api/conversations/{id}/messages", MESSAGES),
    _route("POST", "/api/conversations/{id}/read", MESSAGES),
    _route("POST", "/api/conversations/{id}/delivered", MESSAGES),
    _route("PATCH DELETE", "/api/messages/{id}", MESSAGES),
    _route("GET", "/api/messages/{id}/receipts", MESSAGES),
    _route("PUT DELETE", "/api/messages/{id}/reactions/{emoji}", MESSAGES),
    _route("GET", "/api/unread", MESSAGES),
    _route("GET", "/api/search", MESSAGES),
    _route("GET", "/api/users", IDENTITY),
    _route("GET", "/api/users/{id}", IDENTITY),
    *(_route("GET", f"/api/{service}/openapi.json", service) for service in SERVICES),
)
