"""Which principal ids name somebody: the directory conversations_service consults before it
makes anyone a member or invites them.

Two sources, in order:

1. The ``principals`` table: every user and machine client that has called this service's API
   is recorded there on its first call (``remember``). Each process remembers which ids it has
   already recorded, so this costs one write per principal and process, not one per request.
2. When ``IDENTITY_URL`` is configured, ids not in that table are looked up in identity_service's
   people directory (``GET /api/users/{id}``: 200 known, 404 unknown), with this service's own
   client-credentials token (scope ``parley.internal``). Found people are recorded in the table,
   so each is looked up once.

With an external OpenID Provider there is no directory to ask (``IDENTITY_URL`` unset): a person
can then be added once they have used Parley. Machine clients (``machine:<sub>``) are never in the
people directory; a bot becomes known once it has called the API with its own token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote

import httpx

from conversations_service.errors import UnknownUsers
from conversations_service.store import get_known_principal_ids, record_principals
from servicekit.client_credentials import ClientCredentialsTokenSource
from servicekit.db import Database
from servicekit.errors import UpstreamUnavailable
from servicekit.http import UpstreamClient
from servicekit.tokens import MACHINE_ID_PREFIX, Principal

# Ids this process knows are recorded; cleared when full so memory stays bounded (a cleared id
# costs one idempotent insert the next time its principal calls).
MAX_REMEMBERED_IDS: Final = 100_000
# Parallel lookups of unknown ids, so adding many people at once stays quick without flooding
# identity_service.
MAX_CONCURRENT_LOOKUPS: Final = 8


class Directory:
    """Answers whether ids name principals, from the table and the people directory."""

    def __init__(
        self,
        database: Database,
        people: UpstreamClient | None = None,
        tokens: ClientCredentialsTokenSource | None = None,
        token_http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if (people is None) != (tokens is None):
            raise ValueError("give both the people directory client and its token source")
        self._database = database
        self._people = people
        self._tokens = tokens
        self._token_http_client = token_http_client
        self._recorded: set[str] = set()

    async def remember(self, principal: Principal) -> None:
        """Record that ``principal`` exists (once per process)."""
        if principal.id in self._recorded:
            return
        now = datetime.now(UTC)
        await self._database.transaction(
            lambda connection: record_principals(connection, {principal.id: principal.kind}, now)
        )
        if len(self._recorded) >= MAX_REMEMBERED_IDS:
            self._recorded.clear()
        self._recorded.add(principal.id)

    async def require_known(self, ids: Sequence[str], *, field: str) -> None:
        """Raise ``UnknownUsers`` naming every id in ``ids`` that names nobody."""
        if not ids:
            return
        known = await self._database.transaction(
            lambda connection: get_known_principal_ids(connection, ids)
        )
        missing = [i for i in ids if i not in known]
        found = await self._look_up_people([i for i in missing if not _is_machine(i)])
        if found:
            now = datetime.now(UTC)
            await self._database.transaction(
                lambda connection: record_principals(connection, dict.fromkeys(found, "user"), now)
            )
        unknown = [i for i in missing if i not in found]
        if unknown:
            raise UnknownUsers(field, unknown)

    async def _look_up_people(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the people directory knows (none, when there is no directory)."""
        if self._people is None or self._tokens is None or not ids:
            return set()
        people, tokens = self._people, self._tokens
        limit = asyncio.Semaphore(MAX_CONCURRENT_LOOKUPS)

        async def exists(user_id: str) -> bool:
            async with limit:
                token = await tokens.token()
                response = await people.get(
                    f"/api/users/{quote(user_id, safe='')}",
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                )
            if response.status_code == 200:
                return True
            if response.status_code == 404:
                return False
            raise UpstreamUnavailable(
                f"The people directory answered {response.status_code}.", retry_after=5
            )

        answers = await asyncio.gather(*(exists(user_id) for user_id in ids))
        return {user_id for user_id, known in zip(ids, answers, strict=True) if known}

    async def close(self) -> None:
        if self._people is not None:
            await self._people.aclose()
        if self._token_http_client is not None:
            await self._token_http_client.aclose()


def _is_machine(principal_id: str) -> bool:
    return principal_id.startswith(MACHINE_ID_PREFIX)
