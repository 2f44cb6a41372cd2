"""Mail to people: sent over SMTP, or in development without ``SMTP_URL`` written to the log.

``SMTP_URL`` names the server, how to secure the connection and, optionally, the credentials
(percent-encoded where they contain ``@``, ``:`` or ``/``)::

    smtp://relay.internal:25                    plain SMTP (a relay on a trusted network)
    smtp+starttls://user:pass@mail.example:587  submission, upgraded with STARTTLS (required)
    smtps://user:pass@mail.example:465          TLS from the first byte

smtplib is synchronous, so each message is sent from a worker thread, at most
``SENDING_CONCURRENCY`` at a time. Pages hand their messages to ``deliver`` as a background task,
after the response: nobody waits for the mail server, and no response time tells whether a
message was sent. A transient failure is retried a few times; then the failure is logged
(subject and error, never the body, which holds a link that grants something) and dropped.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Final, Protocol
from urllib.parse import unquote, urlsplit

import anyio
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from identity_service.settings import IdentitySettings
from servicekit.logging import ConsoleFormatter, JsonFormatter

logger = logging.getLogger("identity_service.mail")

DEFAULT_SMTP_PORTS: Final = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
SMTP_TIMEOUT_SECONDS: Final = 15.0  # per connection and command; a healthy server answers at once
SENDING_CONCURRENCY: Final = 4  # connections open to the mail server at once
SEND_ATTEMPTS: Final = 3
SEND_DEADLINE_SECONDS: Final = 60.0  # all attempts of one message, backoff included
RETRY_WAIT_INITIAL_SECONDS: Final = 0.5
RETRY_WAIT_MAX_SECONDS: Final = 10.0
OUTBOX_LOGGER: Final = "identity_service.mail.outbox"


@dataclass(frozen=True)
class Mail:
    """A plain-text message to one person."""

    to: str
    subject: str
    body: str


class Mailer(Protocol):
    async def send(self, mail: Mail) -> None:
        """Send ``mail`` or raise (``OSError``, which includes ``smtplib.SMTPException``)."""


class SmtpMailer:
    def __init__(self, url: str, sender: str, local_hostname: str) -> None:
        parts = urlsplit(url)
        self._scheme = parts.scheme
        self._host = parts.hostname or ""
        self._port = parts.port or DEFAULT_SMTP_PORTS[parts.scheme]
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password or "")
        self._sender = sender
        # Named in EHLO; left to smtplib, it would be looked up in DNS on every connection.
        self._local_hostname = local_hostname
        self._limiter = anyio.CapacityLimiter(SENDING_CONCURRENCY)

    async def send(self, mail: Mail) -> None:
        message = compose(mail, self._sender)
        await anyio.to_thread.run_sync(self._send_now, message, limiter=self._limiter)

    def _send_now(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        connection: smtplib.SMTP
        if self._scheme == "smtps":
            connection = smtplib.SMTP_SSL(
                self._host,
                self._port,
                local_hostname=self._local_hostname,
                timeout=SMTP_TIMEOUT_SECONDS,
                context=context,
            )
        else:
            connection = smtplib.SMTP(
                self._host,
                self._port,
                local_hostname=self._local_hostname,
                timeout=SMTP_TIMEOUT_SECONDS,
            )
        with connection:
            if self._scheme == "smtp+starttls":
                connection.starttls(context=context)
            if self._username is not None:
                connection.login(self._username, self._password)
            connection.send_message(message)


def compose(mail: Mail, sender: str) -> EmailMessage:
    """``mail`` as an RFC 5322 message from ``sender``, marked as sent by a machine."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
    message.set_content(mail.body)
    return message


class LoggedMailer:
    """Development without ``SMTP_URL``: each message is written to the log, not sent.

    servicekit's log formatters scrub anything that looks like a token, which would include the
    link a developer has to follow. So these records go only to a handler of their own that
    writes the scrubbed log line followed by the message body as it is. ``build_mailer`` never
    makes one in production, where ``SMTP_URL`` is required.
    """

    def __init__(self, service_name: str, log_format: str) -> None:
        self._logger = logging.getLogger(OUTBOX_LOGGER)
        self._logger.propagate = False
        if not any(isinstance(handler, _OutboxHandler) for handler in self._logger.handlers):
            self._logger.addHandler(_OutboxHandler(service_name, log_format))

    async def send(self, mail: Mail) -> None:
        self._logger.info(
            "mail not sent (no SMTP_URL is set): %r to %s",
            mail.subject,
            mail.to,
            extra={"mail_body": mail.body},
        )


class _OutboxHandler(logging.Handler):
    def __init__(self, service_name: str, log_format: str) -> None:
        super().__init__()
        self._json = log_format == "json"
        self.setFormatter((JsonFormatter if self._json else ConsoleFormatter)(service_name))

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        body = str(record.__dict__.get("mail_body", ""))
        if not self._json:
            return line + "\n" + textwrap.indent(body, "    ")
        entry = json.loads(line)
        entry["mail_body"] = body  # deliberately unscrubbed: see LoggedMailer
        return json.dumps(entry, ensure_ascii=False)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # Looked up each time rather than kept: whatever stderr is now (tests capture it).
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except (OSError, ValueError, TypeError):
            self.handleError(record)


def build_mailer(settings: IdentitySettings) -> Mailer:
    issuer_host = urlsplit(settings.oidc_issuer).hostname or "localhost"
    sender = settings.mail_from or f"Parley <no-reply@{issuer_host}>"
    if settings.smtp_url is not None:
        return SmtpMailer(settings.smtp_url, sender, issuer_host)
    if settings.is_production:  # the settings refuse this already; mail is never logged there
        raise RuntimeError("SMTP_URL is required in production")
    return LoggedMailer(settings.service_name, settings.log_format)


def _worth_retrying(error: BaseException) -> bool:
    if isinstance(error, smtplib.SMTPResponseException):
        return 400 <= error.smtp_code < 500  # 4xx: try again later (RFC 5321 §4.2.1)
    if isinstance(error, smtplib.SMTPRecipientsRefused | smtplib.SMTPNotSupportedError):
        return False
    return isinstance(error, OSError)  # refused, reset or timed out: the server may be back


async def deliver(mailer: Mailer, mails: Sequence[Mail]) -> None:
    """Send each of ``mails``, retrying transient failures; log and drop what cannot be sent."""
    for mail in mails:
        retrying = AsyncRetrying(
            retry=retry_if_exception(_worth_retrying),
            wait=wait_random_exponential(
                multiplier=RETRY_WAIT_INITIAL_SECONDS, max=RETRY_WAIT_MAX_SECONDS
            ),
            stop=stop_after_attempt(SEND_ATTEMPTS) | stop_after_delay(SEND_DEADLINE_SECONDS),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await mailer.send(mail)
        except OSError as error:
            logger.warning(
                "mail not delivered",
                extra={"subject": mail.subject, "error": repr(error)},
            )
