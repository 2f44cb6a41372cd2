"""conversations_service served over real HTTP on the run's PostgreSQL (both modes) and Redis,
with a LocalIssuer for tokens and a tiny stand-in for identity_service's people directory."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conversations_service.app import create_app
from conversations_service.settings import load_settings
from servicekit.events import Event, EventBus
from tests.support.issuer import LocalIssuer, running_issuer
from tests.support.servers import serve_in_loop

SERVICE_CLIENT_ID = "parley-services"
SERVICE_CLIENT_SECRET = "conversations-test-secret"


@dataclass
class PeopleDirectory:
    """Answers ``GET /api/users/{id}`` like identity_service: 200 for known people, else 404."""

    known: set[str] = field(default_factory=set)
    lookups: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)

    def app(self) -> Starlette:
        async def get_user(request: Request) -> Response:
            user_id = request.path_params["user_id"]
            self.lookups.append(user_id)
            self.authorizations.append(request.headers.get("Authorization"))
            if user_id in self.known:
                return JSONResponse({"id": user_id, "display_name": "Someone", "email": None})
            return JSONResponse({"code": "user_not_found"}, status_code=404)

        return Starlette(routes=[Route("/api/users/{user_id}", get_user)])


@dataclass(frozen=True)
class Caller:
    """A principal and the token it calls with."""

    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Api:
    """Calls the served conversations_service as one principal or another."""

    def __init__(self, url: str, issuer: LocalIssuer, people: PeopleDirectory) -> None:
        self.url = url
        self.issuer = issuer
        self.people = people
        self.http = httpx.AsyncClient(base_url=url, timeout=30.0)

    def person(self, *, known: bool = True) -> Caller:
        """A fresh person; ``known`` ones are in the people directory."""
        user_id = str(uuid.uuid4())
        if known:
            self.people.known.add(user_id)
        return Caller(user_id, self.issuer.access_token(sub=user_id))

    def bot(self, scope: str = "chat.read chat.write") -> Caller:
        client_id = f"bot-{uuid.uuid4().hex[:10]}"
        return Caller(f"machine:{client_id}", self.issuer.machine_token(client_id, scope=scope))

    def service(self) -> Caller:
        return Caller(
            f"machine:{SERVICE_CLIENT_ID}",
            self.issuer.machine_token(SERVICE_CLIENT_ID, scope="parley.internal"),
        )

    async def call(
        self, caller: Caller | None, method: str, path: str, **options: Any
    ) -> httpx.Response:
        headers = {} if caller is None else caller.headers
        return await self.http.request(method, path, headers=headers, **options)

    async def group(self, owner: Caller, *members: Caller, title: str = "Team") -> dict[str, Any]:
        response = await self.call(
            owner,
            "POST",
            "/api/conversations",
            json={"kind": "group", "title": title, "member_ids": [m.id for m in members]},
        )
        assert response.status_code == 201, response.text
        conversation: dict[str, Any] = response.json()
        return conversation

    async def direct(self, creator: Caller, other: Caller) -> httpx.Response:
        return await self.call(
            creator,
            "POST",
            "/api/conversations",
            json={"kind": "direct", "member_ids": [other.id]},
        )

    async def set_role(
        self, actor: Caller, conversation_id: str, target: Caller, role: str
    ) -> httpx.Response:
        return await self.call(
            actor,
            "PATCH",
            f"/api/conversations/{conversation_id}/members/{target.id}",
            json={"role": role},
        )

    async def members(self, conversation_id: str) -> dict[str, str]:
        """Roles by member id, as the internal endpoint reports them."""
        response = await self.call(
            self.service(), "GET", f"/internal/conversations/{conversation_id}/members"
        )
        assert response.status_code == 200, response.text
        return {m["user_id"]: m["role"] for m in response.json()["members"]}


ServerStarter = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture(scope="module")
async def issuer() -> AsyncIterator[LocalIssuer]:
    async with running_issuer() as issuer:
        issuer.register_client(SERVICE_CLIENT_ID, SERVICE_CLIENT_SECRET, "parley.internal")
        yield issuer


@pytest.fixture(scope="module")
def event_namespace(redis_namespace: str) -> str:
    """This module's Redis namespace, so event assertions see only this module's events."""
    return f"{redis_namespace}-conversations-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def start_server(
    database_url: str, redis_url: str, event_namespace: str, issuer: LocalIssuer
) -> ServerStarter:
    """Starts the service; keyword arguments are environment variables to add or override."""

    @asynccontextmanager
    async def start(**environment: str) -> AsyncIterator[Api]:
        people = PeopleDirectory()
        async with serve_in_loop(people.app()) as people_url:
            settings = load_settings(
                {
                    "DATABASE_URL": database_url,
                    "DATABASE_POOL_SIZE": "4",
                    "REDIS_URL": redis_url,
                    "REDIS_NAMESPACE": event_namespace,
                    "OIDC_ISSUER": issuer.url,
                    "API_AUDIENCE": issuer.audience,
                    "IDENTITY_URL": people_url,
                    "SERVICE_CLIENT_ID": SERVICE_CLIENT_ID,
                    "SERVICE_CLIENT_SECRET": SERVICE_CLIENT_SECRET,
                    **environment,
                }
            )
            async with serve_in_loop(create_app(settings)) as url:
                api = Api(url, issuer, people)
                try:
                    yield api
                finally:
                    await api.http.aclose()

    return start


@pytest.fixture(scope="module")
async def api(start_server: ServerStarter) -> AsyncIterator[Api]:
    async with start_server() as api:
        yield api


class EventLog:
    """Every event published on the "conversations" topic of this module's namespace."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def record(self, event: Event) -> None:
        self.events.append(event)

    async def wait_for(
        self, predicate: Callable[[Event], bool], count: int = 1, seconds: float = 5.0
    ) -> list[Event]:
        """The events matching ``predicate`` once there are ``count`` of them."""
        async with asyncio.timeout(seconds):
            while True:
                found = [event for event in self.events if predicate(event)]
                if len(found) >= count:
                    return found
                await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
async def event_log(redis_url: str, event_namespace: str) -> AsyncIterator[EventLog]:
    log = EventLog()
    client = Redis.from_url(redis_url)
    subscriber = EventBus(client, event_namespace).subscribe(log.record, topics=["conversations"])
    async with subscriber:
        for _ in range(500):  # up to 5 s for Redis to confirm the subscription
            if subscriber.connected:
                break
            await asyncio.sleep(0.01)
        assert subscriber.connected
        yield log
    await client.aclose()
