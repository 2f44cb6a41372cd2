"""Domain events between Parley's services, carried by Redis pub/sub.

A service publishes an ``Event`` after its transaction commits; the realtime service subscribes and
delivers each one to the WebSockets of the people it names (``conversation_id`` / ``user_ids``).
Pub/sub reaches only the subscribers connected at that instant, so live delivery may miss: every
event carries the producer's ``position``, and ``on_reconnect`` tells a consumer when to recover
from the database what it may have missed. Channels are ``{namespace}:events:{topic}``.

    ValueError
    └── InvalidEvent — not a well-formed envelope of a version this code understands
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, NoReturn

import uuid6
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from servicekit.timestamps import utc_timestamp

EVENT_VERSION: Final = 1  # the major version; additive changes (new optional fields) keep it
RECONNECT_MIN_SECONDS: Final = 0.05  # first retry after a drop: a Redis restart takes ~0.1 s
RECONNECT_MAX_SECONDS: Final = 2.0  # cap, so a recovered Redis is noticed within 2 s
CONNECT_TIMEOUT_SECONDS: Final = 5.0  # connect + send SUBSCRIBE; a healthy Redis answers in ms
POLL_SECONDS: Final = 1.0  # longest blocking read, so the heartbeat below gets checked
IDLE_PING_SECONDS: Final = 15.0  # PING a silent connection well before proxies' 60 s idle cut
PONG_TIMEOUT_SECONDS: Final = 5.0  # no reply this long after a PING: the connection is dead

_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")  # e.g. "message.created"
_NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]+$")  # no ':' or glob characters: patterns stay inside

logger = logging.getLogger("servicekit.events")

EventHandler = Callable[["Event"], Awaitable[None]]
ReconnectCallback = Callable[[], Awaitable[None]]


class InvalidEvent(ValueError):
    """A payload that is not a valid event envelope of a supported version."""


def _utc_now() -> str:
    return utc_timestamp(datetime.now(UTC))


@dataclass(frozen=True, kw_only=True)
class Event:
    """The versioned envelope of one domain event, checked whenever one is built.

    ``Event(type="message.created", data={...}, position=seq, conversation_id=...)`` fills in the
    current version, a fresh id and the current time.
    """

    version: int = EVENT_VERSION
    id: str = field(default_factory=lambda: str(uuid6.uuid7()))  # UUIDv7: sorts by creation time
    type: str
    occurred_at: str = field(default_factory=_utc_now)  # ISO-8601 in UTC
    data: dict[str, Any]
    position: str | int | None = None  # the producer's ordering token, e.g. a conversation's seq
    conversation_id: str | None = None  # everyone in this conversation is concerned …
    user_ids: tuple[str, ...] = ()  # … or exactly these users

    def __post_init__(self) -> None:
        if type(self.version) is not int or self.version != EVENT_VERSION:
            raise InvalidEvent(f"unsupported event version {self.version!r}")
        if not isinstance(self.id, str) or not _is_uuid(self.id):
            raise InvalidEvent("id must be a UUID string")
        if not isinstance(self.type, str) or not _EVENT_TYPE.match(self.type):
            raise InvalidEvent("type must look like 'message.created'")
        if not isinstance(self.occurred_at, str) or not _is_utc_timestamp(self.occurred_at):
            raise InvalidEvent("occurred_at must be an ISO-8601 timestamp in UTC")
        if not isinstance(self.data, dict):
            raise InvalidEvent("data must be a JSON object")
        if isinstance(self.position, bool) or not isinstance(self.position, str | int | None):
            raise InvalidEvent("position must be a string, an integer or null")
        if not isinstance(self.conversation_id, str | None):
            raise InvalidEvent("conversation_id must be a string or null")
        if not isinstance(self.user_ids, tuple) or not all(
            isinstance(user_id, str) for user_id in self.user_ids
        ):
            raise InvalidEvent("user_ids must be a list of strings")

    def to_json(self) -> str:
        """The envelope as compact JSON; ``InvalidEvent`` if ``data`` is not JSON-serialisable."""
        try:
            return json.dumps(
                asdict(self), ensure_ascii=False, allow_nan=False, separators=(",", ":")
            )
        except (TypeError, ValueError) as error:
            raise InvalidEvent(f"data is not JSON-serialisable: {error}") from error

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        """Parse and check an envelope, ignoring unknown fields (added by a newer producer)."""
        try:
            payload = json.loads(raw, parse_constant=_reject_constant)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidEvent(f"not JSON: {error}") from error
        if not isinstance(payload, dict):
            raise InvalidEvent("an event must be a JSON object")
        # Checked here because the defaults would otherwise fill in a version, id or time.
        missing = {"version", "id", "type", "occurred_at", "data"} - payload.keys()
        if missing:
            raise InvalidEvent(f"missing fields: {', '.join(sorted(missing))}")
        arguments = {name: value for name, value in payload.items() if name in _EVENT_FIELDS}
        if isinstance(arguments.get("user_ids"), list):
            arguments["user_ids"] = tuple(arguments["user_ids"])
        return cls(**arguments)


_EVENT_FIELDS: Final = frozenset(event_field.name for event_field in fields(Event))


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_utc_timestamp(value: str) -> bool:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return False
    return moment.utcoffset() == timedelta(0)


def _reject_constant(name: str) -> NoReturn:
    raise InvalidEvent(f"{name} is not valid JSON")


class EventBus:
    """Publishes events to, and subscribes to, the channels of one namespace."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        if not _NAMESPACE.match(namespace):
            raise ValueError("namespace must be letters, digits, '_', '.' or '-'")
        self.redis = redis
        self.namespace = namespace

    def channel(self, topic: str) -> str:
        """The Redis channel (or, with glob characters, pattern) for ``topic``."""
        if not topic or any(character.isspace() for character in topic):
            raise ValueError("a topic is a non-empty string without whitespace")
        return f"{self.namespace}:events:{topic}"

    async def publish(self, event: Event, topic: str) -> int:
        """Publish ``event`` on ``topic``; returns how many subscribers got it, raises on errors."""
        return int(await self.redis.publish(self.channel(topic), event.to_json()))

    def subscribe(
        self,
        handler: EventHandler,
        *,
        topics: Iterable[str] = (),
        patterns: Iterable[str] = (),
        on_reconnect: ReconnectCallback | None = None,
    ) -> EventSubscriber:
        """A subscriber (not yet started) to ``topics`` and glob ``patterns`` such as ``user:*``.

        An event on a topic that also matches a pattern is delivered once for each.
        """
        return EventSubscriber(
            self.redis,
            handler,
            channels=[self.channel(topic) for topic in topics],
            patterns=[self.channel(pattern) for pattern in patterns],
            on_reconnect=on_reconnect,
        )


class EventSubscriber:
    """Delivers the events on some channels to ``handler`` from a background task.

    It owns its connection: after any failure it reconnects with jittered exponential backoff,
    resubscribes, and then awaits ``on_reconnect`` (also after a first subscription that needed
    retries), before delivering anything newer. Events are handled one at a time, so a slow
    handler holds back the rest; Redis then drops the connection at its output-buffer limit,
    which ends in a reconnect, so a consumer's recovery covers that case too.
    """

    def __init__(
        self,
        redis: Redis,
        handler: EventHandler,
        *,
        channels: Iterable[str] = (),
        patterns: Iterable[str] = (),
        on_reconnect: ReconnectCallback | None = None,
    ) -> None:
        self.channels = tuple(channels)
        self.patterns = tuple(patterns)
        if not self.channels and not self.patterns:
            raise ValueError("subscribe to at least one topic or pattern")
        self._handler = handler
        self._on_reconnect = on_reconnect
        # redis-py's own retries would reconnect underneath us and hide the gap from
        # on_reconnect, so this subscriber gets its own pool with them switched off.
        source = redis.connection_pool
        self._pool = ConnectionPool(
            connection_class=source.connection_class,
            **{**source.connection_kwargs, "retry": Retry(NoBackoff(), 0)},
        )
        self._task: asyncio.Task[None] | None = None
        self._connected = False

    @property
    def connected(self) -> bool:
        """Whether every subscription is confirmed by Redis right now (for readiness checks)."""
        return self._connected

    def start(self) -> None:
        """Start receiving in a background task of the running event loop."""
        if self._task is not None:
            raise RuntimeError("the subscriber has already been started")
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"event subscriber {', '.join(self.channels + self.patterns)}"
        )

    async def stop(self) -> None:
        """Stop receiving and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._connected = False
        await self._pool.aclose()

    async def __aenter__(self) -> EventSubscriber:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _run(self) -> None:
        failures = 0  # consecutive attempts that ended before all subscriptions were confirmed
        while True:
            try:
                await self._receive(recovering=failures > 0)
            except (RedisError, OSError) as error:  # OSError includes TimeoutError
                logger.warning("event subscription lost", extra={"error": repr(error)})
            except Exception:  # a bug must not end the subscription silently: log, retry
                logger.exception("event subscriber failed")
            failures = 1 if self._connected else failures + 1
            self._connected = False
            # Full-range jitter would allow ~0 s waits; half-fixed jitter keeps a floor.
            ceiling = min(RECONNECT_MAX_SECONDS, RECONNECT_MIN_SECONDS * 2 ** (failures - 1))
            await asyncio.sleep(random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter

    async def _receive(self, *, recovering: bool) -> None:
        """Subscribe on a fresh connection and handle messages until the connection fails."""
        pubsub = PubSub(self._pool)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                if self.channels:
                    await pubsub.subscribe(*self.channels)
                if self.patterns:
                    await pubsub.psubscribe(*self.patterns)
            unconfirmed = len(self.channels) + len(self.patterns)
            loop = asyncio.get_running_loop()
            last_heard = loop.time()
            ping_sent = False
            while True:
                message = await pubsub.get_message(timeout=POLL_SECONDS)
                if message is None:
                    silent_for = loop.time() - last_heard
                    if silent_for > IDLE_PING_SECONDS + PONG_TIMEOUT_SECONDS:
                        raise RedisConnectionError(f"Redis silent for {silent_for:.0f} s")
                    if silent_for > IDLE_PING_SECONDS and not ping_sent:
                        await pubsub.ping()
                        ping_sent = True
                    continue
                last_heard, ping_sent = loop.time(), False
                if message["type"] in ("subscribe", "psubscribe"):
                    unconfirmed -= 1
                    if unconfirmed == 0:
                        self._connected = True
                        if recovering:
                            await self._call_on_reconnect()
                elif message["type"] in ("message", "pmessage"):
                    await self._deliver(message["channel"], message["data"])
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py

    async def _call_on_reconnect(self) -> None:
        logger.info("event subscription restored", extra={"channels": self.channels})
        if self._on_reconnect is None:
            return
        try:
            await self._on_reconnect()
        except Exception:
            logger.exception("on_reconnect callback failed")

    async def _deliver(self, channel: str | bytes, raw: str | bytes) -> None:
        channel_name = channel.decode() if isinstance(channel, bytes) else channel
        try:
            event = Event.from_json(raw)
        except InvalidEvent as error:
            # Payloads may hold message bodies: log why the event was skipped, never its content.
            logger.warning(
                "skipped an invalid event", extra={"channel": channel_name, "reason": str(error)}
            )
            return
        try:
            await self._handler(event)
        except Exception:
            logger.exception(
                "event handler failed",
                extra={"channel": channel_name, "event_id": event.id, "event_type": event.type},
            )
