"""Browser sessions, kept server-side in Redis; the browser holds only a signed, opaque id.

Keys, under the install's namespace:

    {ns}:bff:session:{id}              hash: the session, tokens included; its TTL is the time to
                                       idle expiry, capped by the absolute expiry
    {ns}:bff:sessions-by-sid:{digest}  set: ids of the sessions of one provider session (``sid``)
    {ns}:bff:sessions-by-sub:{digest}  set: ids of the sessions of one user (``sub``)

The two index sets let a back-channel logout find every session it ends. They only ever point
at sessions; a session that expired on its own leaves a stale id behind until the set expires.

A session ends — and ``session.ended`` is published on ``SESSION_ENDED_TOPIC`` so that live
WebSockets can be closed — at logout, at back-channel logout, when a refresh fails, when a new
sign-in replaces it, and when it is found past its idle or absolute timeout. It never outlives its
refresh token (or, without one, its access token), since after that it could reach no API.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from bff.cookies import new_random_id
from bff.oidc import TokenSet
from servicekit.events import Event, EventBus

logger = logging.getLogger("bff.sessions")

SESSION_ENDED_TOPIC: Final = "bff:session-ended"
SESSION_ENDED_EVENT: Final = "session.ended"
# Seconds. last_seen is written at most this often, saving a Redis write on most requests; idle
# expiry is therefore exact to within a minute.
TOUCH_INTERVAL_SECONDS: Final = 60
# Seconds. Refresh this long before the access token expires, or at half its lifetime if shorter,
# so a token is never forwarded just as it expires (clock skew, time in transit).
REFRESH_MARGIN_SECONDS: Final = 30
# Seconds; assumed when the provider omits expires_in (it is only RECOMMENDED, RFC 6749 §5.1).
DEFAULT_ACCESS_TOKEN_LIFETIME_SECONDS: Final = 60

# Updates fields of a session that still exists (so a request racing a logout cannot bring the
# session back half-written) and resets its TTL. ARGV: TTL in ms, then field/value pairs.
_UPDATE_IF_EXISTS: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""


@dataclass(frozen=True, kw_only=True)
class Session:
    """One signed-in browser. Times are Unix epoch seconds (several processes share them)."""

    # Secrets are left out of repr(), so that logging a session can never leak them.
    id: str = field(repr=False)  # what the cookie carries; never logged, published or shown
    public_id: str  # not secret: names the session in logout URLs, events and logs
    subject: str  # the provider's sub
    claims: dict[str, Any]  # profile claims the SPA may see
    provider_sid: str | None  # the provider's session id, for back-channel logout
    id_token: str = field(repr=False)
    access_token: str = field(repr=False)
    access_token_refresh_at: float
    refresh_token: str | None = field(repr=False)
    created_at: float
    last_seen_at: float
    expires_at: float  # absolute: sign-in + absolute timeout, or the refresh token's end

    def needs_refresh(self, now: float) -> bool:
        """Whether the access token is due for renewal and can be renewed. Without a refresh
        token it is used until the session ends with it (see ``expires_at``)."""
        return self.refresh_token is not None and now >= self.access_token_refresh_at


def _digest(value: str) -> str:
    """A fixed-length key part for a provider-chosen string of any length and content."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _token_fields(tokens: TokenSet, now: float) -> dict[str, str]:
    lifetime = tokens.expires_in or DEFAULT_ACCESS_TOKEN_LIFETIME_SECONDS
    refresh_at = now + max(lifetime - REFRESH_MARGIN_SECONDS, lifetime / 2)
    fields = {"access_token": tokens.access_token, "access_token_refresh_at": repr(refresh_at)}
    if tokens.refresh_token is not None:  # a provider that does not rotate sends none back
        fields["refresh_token"] = tokens.refresh_token
    return fields


def _usable_until(tokens: TokenSet, now: float) -> float:
    """Until when these tokens can reach the API, as far as the provider tells."""
    if tokens.refresh_token is None:
        return now + (tokens.expires_in or DEFAULT_ACCESS_TOKEN_LIFETIME_SECONDS)
    if tokens.refresh_expires_in is not None:
        return now + tokens.refresh_expires_in
    return math.inf


class SessionStore:
    """Creates, finds, refreshes and ends sessions."""

    def __init__(
        self,
        redis: Redis,
        namespace: str,
        *,
        idle_timeout_seconds: int,
        absolute_timeout_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._namespace = namespace
        self._events = EventBus(redis, namespace)
        self._idle = idle_timeout_seconds
        self._absolute = absolute_timeout_seconds
        self._clock = clock
        self._update_if_exists = redis.register_script(_UPDATE_IF_EXISTS)

    def _key(self, session_id: str) -> str:
        return f"{self._namespace}:bff:session:{session_id}"

    def _sid_index(self, provider_sid: str) -> str:
        return f"{self._namespace}:bff:sessions-by-sid:{_digest(provider_sid)}"

    def _sub_index(self, subject: str) -> str:
        return f"{self._namespace}:bff:sessions-by-sub:{_digest(subject)}"

    def _ttl_ms(self, last_seen_at: float, expires_at: float) -> int:
        remaining = min(last_seen_at + self._idle, expires_at) - self._clock()
        return max(1, math.ceil(remaining * 1000))

    async def create(
        self,
        *,
        subject: str,
        claims: dict[str, Any],
        provider_sid: str | None,
        id_token: str,
        tokens: TokenSet,
    ) -> Session:
        """A new session with a new id (never a reused one: no session fixation)."""
        now = self._clock()
        session_id = new_random_id()
        expires_at = min(now + self._absolute, _usable_until(tokens, now))
        fields = {
            "public_id": new_random_id(),
            "subject": subject,
            "claims": json.dumps(claims),
            "provider_sid": provider_sid or "",
            "id_token": id_token,
            "refresh_token": "",
            "created_at": repr(now),
            "last_seen_at": repr(now),
            "expires_at": repr(expires_at),
        } | _token_fields(tokens, now)
        key = self._key(session_id)
        mapping: dict[FieldT, EncodableT] = {name: value for name, value in fields.items()}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=mapping)
            pipe.pexpire(key, self._ttl_ms(now, expires_at))
            indexes = [self._sub_index(subject)]
            if provider_sid:
                indexes.append(self._sid_index(provider_sid))
            for index in indexes:
                pipe.sadd(index, session_id)
                # No member outlives the absolute timeout, so neither need the set.
                pipe.expire(index, self._absolute)
            await pipe.execute()
        session = _session_from(session_id, fields)
        assert session is not None
        return session

    async def get(self, session_id: str, *, touch: bool = True) -> Session | None:
        """The live session ``session_id``, or None; ``touch`` records activity (idle timeout)."""
        session = await self._load(session_id)
        if session is None:
            return None
        now = self._clock()
        if now >= session.expires_at or now >= session.last_seen_at + self._idle:
            await self.end(session, "expired")
            return None
        if touch and now - session.last_seen_at >= TOUCH_INTERVAL_SECONDS:
            session = replace(session, last_seen_at=now)
            await self._update(session, {"last_seen_at": repr(now)})
        return session

    async def store_refreshed_tokens(self, session: Session, tokens: TokenSet) -> Session | None:
        """Keep the tokens of a refresh; None if the session ended meanwhile."""
        now = self._clock()
        fields = _token_fields(tokens, now)
        if tokens.refresh_token is not None:
            new_limit = min(session.created_at + self._absolute, _usable_until(tokens, now))
            fields["expires_at"] = repr(new_limit)
        refreshed = _session_from(session.id, _fields_of(session) | fields)
        if refreshed is None or not await self._update(refreshed, fields):
            return None
        return refreshed

    async def end(self, session: Session, reason: str) -> bool:
        """Delete ``session`` and announce it; False if it had already ended."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(session.id))
            pipe.srem(self._sub_index(session.subject), session.id)
            if session.provider_sid:
                pipe.srem(self._sid_index(session.provider_sid), session.id)
            deleted, *_ = await pipe.execute()
        if not deleted:
            return False
        logger.info("session ended", extra={"session": session.public_id, "reason": reason})
        event = Event(
            type=SESSION_ENDED_EVENT,
            data={"session": session.public_id, "reason": reason},
            user_ids=(session.subject,),
        )
        try:
            await self._events.publish(event, SESSION_ENDED_TOPIC)
        except RedisError:
            # The session is gone from Redis already; a socket that missed this notice finds
            # that out at its next session check.
            logger.warning("could not announce a session's end", extra={"reason": reason})
        return True

    async def end_provider_sessions(self, *, provider_sid: str | None, subject: str | None) -> int:
        """End the sessions a back-channel logout names: those of ``provider_sid`` when given
        (and of ``subject`` too, when both are), else every session of ``subject``."""
        if provider_sid:
            members = await self._redis.smembers(self._sid_index(provider_sid))
        elif subject:
            members = await self._redis.smembers(self._sub_index(subject))
        else:
            return 0
        ended = 0
        for member in members:
            session = await self._load(_text(member))
            if session is None or (subject and session.subject != subject):
                continue
            ended += await self.end(session, "backchannel_logout")
        return ended

    async def _load(self, session_id: str) -> Session | None:
        raw = await self._redis.hgetall(self._key(session_id))
        if not raw:
            return None
        fields = {_text(name): _text(value) for name, value in raw.items()}
        return _session_from(session_id, fields)

    async def _update(self, session: Session, fields: dict[str, str]) -> bool:
        ttl_ms = self._ttl_ms(session.last_seen_at, session.expires_at)
        flat = [item for pair in fields.items() for item in pair]
        return bool(
            await self._update_if_exists(keys=[self._key(session.id)], args=[ttl_ms, *flat])
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _fields_of(session: Session) -> dict[str, str]:
    return {
        "public_id": session.public_id,
        "subject": session.subject,
        "claims": json.dumps(session.claims),
        "provider_sid": session.provider_sid or "",
        "id_token": session.id_token,
        "access_token": session.access_token,
        "access_token_refresh_at": repr(session.access_token_refresh_at),
        "refresh_token": session.refresh_token or "",
        "created_at": repr(session.created_at),
        "last_seen_at": repr(session.last_seen_at),
        "expires_at": repr(session.expires_at),
    }


def _session_from(session_id: str, fields: dict[str, str]) -> Session | None:
    try:
        return Session(
            id=session_id,
            public_id=fields["public_id"],
            subject=fields["subject"],
            claims=json.loads(fields["claims"]),
            provider_sid=fields["provider_sid"] or None,
            id_token=fields["id_token"],
            access_token=fields["access_token"],
            access_token_refresh_at=float(fields["access_token_refresh_at"]),
            refresh_token=fields["refresh_token"] or None,
            created_at=float(fields["created_at"]),
            last_seen_at=float(fields["last_seen_at"]),
            expires_at=float(fields["expires_at"]),
        )
    except (KeyError, ValueError):
        # Half a session: written by an incompatible version, or damaged. Treat it as absent.
        logger.warning("ignoring an unreadable session record")
        return None
