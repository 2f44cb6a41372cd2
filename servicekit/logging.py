"""Structured JSON logs that carry the request id and never carry a secret.

Every log line is one JSON object with ``time``, ``level``, ``logger``, ``message``, the
service name and, inside a request, its ``request_id``. The id comes from the caller's
``X-Request-ID`` (when it is sane) or is generated, is echoed on the response and is forwarded on
every outgoing call (see ``servicekit.http``), so one id follows a request across services.

Secrets are scrubbed from the message and every extra field: JWTs, ``Bearer`` credentials,
cookie values and anything under a key that names a password, secret, token or cookie.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER: Final = "X-Request-ID"
# Accept a caller's id only if it is short and plain, so it cannot forge log structure.
# Used with fullmatch: an anchored "$" would also accept a trailing newline.
_ACCEPTABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# Polled every few seconds by load balancers and Prometheus: logged at DEBUG, not INFO.
PROBE_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "parley_request_id", default=None
)

REDACTED: Final = "[redacted]"
_SECRET_PATTERNS: Final = (
    # JWTs (JWS compact form): header.payload.signature, header starting with '{"' → 'eyJ'.
    re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"),
    re.compile(r"(?i)(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    # Every "name=value" pair of a Cookie / Set-Cookie header, not only the first.
    re.compile(r"(?i)((?:set-)?cookie:?\s*)[^\s;]+(?:;\s*[^\s;]+)*"),
    re.compile(
        r"(?i)((?:password|passwd|secret|token|refresh_token|access_token|id_token|code_verifier)"
        r"[\"']?\s*[=:]\s*[\"']?)[^\s&\"',;]+"
    ),
)
_SECRET_KEY = re.compile(r"(?i)password|passwd|secret|token|cookie|authorization|credential")

# Attributes every LogRecord has; anything else was passed in ``extra=`` and is logged as a field.
_STANDARD_RECORD_ATTRIBUTES: Final = frozenset(
    set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
    | {"message", "asctime", "taskName", "color_message"}
)


def current_request_id() -> str | None:
    """The id of the request being handled, if any."""
    return _request_id.get()


def bind_request_id(request_id: str | None) -> contextvars.Token[str | None]:
    """Make ``request_id`` current; pass the result to ``reset_request_id`` to undo."""
    return _request_id.set(request_id)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    _request_id.reset(token)


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(candidate: str | None) -> str:
    """The caller's request id when it is acceptable, otherwise a new one."""
    if candidate and _ACCEPTABLE_REQUEST_ID.fullmatch(candidate):
        return candidate
    return new_request_id()


def redact(text: str) -> str:
    """``text`` with every recognisable secret replaced by ``[redacted]``."""
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + REDACTED if m.group(1) else REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


def redact_value(key: str, value: Any) -> Any:
    """``value`` made safe to log under ``key``, recursing into mappings and sequences."""
    if _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(key, item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON, with secrets scrubbed."""

    def __init__(self, service_name: str) -> None:
        super().__init__()
        self.service_name = service_name

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "service": self.service_name,
            "message": redact(record.getMessage()),
        }
        request_id = current_request_id()
        if request_id is not None:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD_RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = redact_value(key, value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class ConsoleFormatter(JsonFormatter):
    """A human-readable line for local development, scrubbed like the JSON one."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self.service_name:<22} {record.levelname:<7} {redact(record.getMessage())}"
        request_id = current_request_id()
        if request_id is not None:
            line += f" request_id={request_id}"
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


def configure_logging(service_name: str, *, level: str = "INFO", log_format: str = "json") -> None:
    """Send every log record, uvicorn's included, to stderr through Parley's formatter."""
    handler = logging.StreamHandler(sys.stderr)
    formatter_class = JsonFormatter if log_format == "json" else ConsoleFormatter
    handler.setFormatter(formatter_class(service_name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers[:] = []
        uvicorn_logger.propagate = True
    # The access line is written by RequestContextMiddleware, with the request id on it.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every outgoing request with its full URL at INFO: noise, and a URL can carry
    # more than a log should. Failures reach the logs through the callers instead.
    logging.getLogger("httpx").setLevel(logging.WARNING)


class RequestContextMiddleware:
    """Binds a request id to each HTTP request and WebSocket and logs one line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.logger = logging.getLogger("servicekit.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = accept_request_id(incoming)
        token = bind_request_id(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            if scope["type"] == "http":
                self.logger.log(
                    logging.DEBUG if scope["path"] in PROBE_PATHS else logging.INFO,
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={"duration_ms": round((time.perf_counter() - started) * 1000, 2)},
                )
            reset_request_id(token)
