"""Who belongs to a conversation, as conversations_service says, with a short-lived cache.

messages_service owns no membership data (BRIEF §2): every call asks conversations_service's
internal members endpoint through servicekit's ``UpstreamClient`` (timeouts, bounded retries, a
circuit breaker) with a client-credentials token carrying ``parley.internal``. When it cannot be
reached the call ends in ``UpstreamUnavailable`` (503 with ``Retry-After``) before anything is
written; once it is back the breaker half-opens and calls work again without a restart.

The cache keeps a conversation's member list for ``MEMBERS_CACHE_SECONDS``. conversations_service
publishes ``member.added|updated|removed`` and ``conversation.deleted`` on the ``conversations``
topic; each drops that conversation's entry, and a (re)subscription drops them all, since events
may have been missed meanwhile. The cache is only trusted while that subscription is confirmed:
with Redis down, no event could tell us about a removal, so every call asks upstream. An entry is
stored only if no invalidation arrived while it was being fetched (a generation counter), so an
answer that raced a removal is never cached.

Unknown, deleted, and not-yours conversations are the same 404 ``conversation_not_found``, so a
non-member learns nothing about a conversation's existence (SECURITY-CHECKLIST: no IDOR).
"""

from __future__ import annotations

import collections
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import httpx

from servicekit.client_credentials import ClientCredentialsTokenSource
from servicekit.errors import BadGateway, NotFound, UpstreamUnavailable
from servicekit.events import Event
from servicekit.http import UpstreamClient

logger = logging.getLogger("messages_service.membership")

MEMBERS_CACHE_SECONDS: Final = 5.0  # staleness bound when an invalidation event is lost
MEMBERS_CACHE_ENTRIES: Final = 10_000  # conversations kept; the least recently stored go first
INVALIDATING_EVENTS: Final = frozenset(
    {"member.added", "member.updated", "member.removed", "conversation.deleted"}
)


def conversation_not_found() -> NotFound:
    return NotFound("There is no such conversation.", code="conversation_not_found")


@dataclass(frozen=True)
class ConversationMembers:
    """A conversation's kind and its members' roles, by user id."""

    conversation_id: uuid.UUID
    kind: str
    roles: dict[str, str]

    @property
    def user_ids(self) -> tuple[str, ...]:
        return tuple(self.roles)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self.roles


@dataclass(frozen=True)
class _Entry:
    members: ConversationMembers
    expires_at: float


class Membership:
    """Answers "who is in this conversation" and "which conversations is this person in"."""

    def __init__(
        self,
        client: UpstreamClient,
        tokens: ClientCredentialsTokenSource,
        *,
        cache_seconds: float = MEMBERS_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._tokens = tokens
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: collections.OrderedDict[uuid.UUID, _Entry] = collections.OrderedDict()
        self._generation = 0
        self._cache_trusted: Callable[[], bool] = lambda: False

    def trust_cache_while(self, condition: Callable[[], bool]) -> None:
        """Use cached lists only while ``condition()`` holds (the event subscription is up)."""
        self._cache_trusted = condition

    async def members(self, conversation_id: uuid.UUID) -> ConversationMembers:
        """The conversation's members; 404 ``conversation_not_found`` if it does not exist."""
        entry = self._cache.get(conversation_id)
        if entry is not None and self._clock() < entry.expires_at and self._cache_trusted():
            return entry.members
        generation = self._generation
        members = await self._fetch_members(conversation_id)
        if generation == self._generation:
            self._cache[conversation_id] = _Entry(members, self._clock() + self._cache_seconds)
            self._cache.move_to_end(conversation_id)
            while len(self._cache) > MEMBERS_CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return members

    async def require_member(
        self, conversation_id: uuid.UUID, principal_id: str
    ) -> ConversationMembers:
        """The members of a conversation ``principal_id`` belongs to; 404 for any other."""
        members = await self.members(conversation_id)
        if principal_id not in members:
            raise conversation_not_found()
        return members

    async def conversation_ids_of(self, principal_id: str) -> list[uuid.UUID]:
        """The conversations ``principal_id`` belongs to (never cached: it is one call)."""
        response = await self._get(f"/internal/users/{quote(principal_id, safe='')}/conversations")
        document = _json_object(response)
        raw_ids = document.get("conversation_ids")
        if response.status_code != 200 or not isinstance(raw_ids, list):
            raise _bad_answer("conversation list", response)
        try:
            return [uuid.UUID(str(raw)) for raw in raw_ids]
        except ValueError as error:
            raise _bad_answer("conversation list", response) from error

    def forget(self, conversation_id: uuid.UUID) -> None:
        self._generation += 1
        self._cache.pop(conversation_id, None)

    def forget_all(self) -> None:
        self._generation += 1
        self._cache.clear()

    async def handle_event(self, event: Event) -> None:
        """Drop the cached members of the conversation a membership event is about."""
        if event.type not in INVALIDATING_EVENTS:
            return
        try:
            conversation_id = uuid.UUID(str(event.conversation_id))
        except ValueError:
            self.forget_all()  # a membership event we cannot place: be safe
            return
        self.forget(conversation_id)

    async def on_reconnect(self) -> None:
        """Events may have been missed while the subscription was down: forget everything."""
        self.forget_all()

    async def _fetch_members(self, conversation_id: uuid.UUID) -> ConversationMembers:
        response = await self._get(f"/internal/conversations/{conversation_id}/members")
        if response.status_code == 404:
            raise conversation_not_found()
        document = _json_object(response)
        members = document.get("members")
        if response.status_code != 200 or not isinstance(members, list):
            raise _bad_answer("member list", response)
        roles: dict[str, str] = {}
        for member in members:
            if not isinstance(member, dict) or not isinstance(member.get("user_id"), str):
                raise _bad_answer("member list", response)
            roles[member["user_id"]] = str(member.get("role", "member"))
        return ConversationMembers(conversation_id, str(document.get("kind", "group")), roles)

    async def _get(self, path: str) -> httpx.Response:
        token = await self._tokens.token()
        response = await self._client.get(
            path, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
        )
        if response.status_code in (401, 403):
            # Our own credentials were refused: an operator must fix the service client.
            logger.error("conversations_service refused our token", extra={"path": path})
            raise UpstreamUnavailable("conversations_service refused this service's credentials.")
        return response


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _bad_answer(what: str, response: httpx.Response) -> BadGateway:
    logger.error(
        "unexpected answer from conversations_service",
        extra={"what": what, "status": response.status_code},
    )
    return BadGateway(f"conversations_service answered the {what} request unexpectedly.")
