"""messages_service and the real conversations_service, served over HTTP on the run's PostgreSQL
(both database modes) and Redis, with a LocalIssuer for every token.

messages_service gets its client-credentials token from the LocalIssuer's ``/token`` (client
``parley-services`` with scope ``parley.internal``); people get theirs from
``issuer.access_token(sub=…)``. Conversations are created through conversations_service's own
API, and each test makes fresh people, so tests never see each other's data.

Fixtures for other test modules: ``issuer``, ``conversations`` / ``conversations_url`` (a server
that tests may stop and start again on the same port), ``messages_url``, ``start_messages``
(another messages_service with extra settings) and ``chat``, a small factory of people,
groups and messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from conversations_service.app import create_app as create_conversations_app
from conversations_service.settings import load_settings as load_conversations_settings
from messages_service.app import create_app as create_messages_app
from messages_service.settings import load_settings as load_messages_settings
from servicekit.events import Event, EventBus
from tests.support.issuer import LocalIssuer, running_issuer
from tests.support.servers import free_port, serve_in_loop

SERVICE_CLIENT_ID = "parley-services"
SERVICE_CLIENT_SECRET = "messages-test-secret"
MESSAGES_TOPIC = "messages"


@dataclass(frozen=True)
class Caller:
    """A principal and the token it calls with."""

    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def everyone_directory() -> Starlette:
    """identity_service's people directory as conversations_service asks it: everyone exists."""

    async def get_user(request: Request) -> Response:
        user_id = request.path_params["user_id"]
        return JSONResponse({"id": user_id, "display_name": "Someone", "email": None})

    return Starlette(routes=[Route("/api/users/{user_id}", get_user)])


class ConversationsServer:
    """conversations_service on a fixed port, which a test may stop and start again."""

    def __init__(self, environment: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._environment = environment
        self._stack: AsyncExitStack | None = None

    async def start(self) -> None:
        stack = AsyncExitStack()
        app = create_conversations_app(load_conversations_settings(self._environment))
        await stack.enter_async_context(serve_in_loop(app, self.port))
        self._stack = stack

    async def stop(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()


class Chat:
    """Calls both services as one principal or another, and builds test data."""

    def __init__(self, messages_url: str, conversations_url: str, issuer: LocalIssuer) -> None:
        self.messages_url = messages_url
        self.conversations_url = conversations_url
        self.issuer = issuer
        self.http = httpx.AsyncClient(timeout=30.0)

    def person(self) -> Caller:
        user_id = str(uuid.uuid4())
        return Caller(user_id, self.issuer.access_token(sub=user_id))

    async def bot(self, scope: str = "chat.read chat.write") -> Caller:
        """A machine client, made known to conversations_service by one call of its own."""
        client_id = f"bot-{uuid.uuid4().hex[:10]}"
        bot = Caller(f"machine:{client_id}", self.issuer.machine_token(client_id, scope=scope))
        response = await self.http.get(
            f"{self.conversations_url}/api/conversations", headers=bot.headers
        )
        assert response.status_code == 200, response.text
        return bot

    async def call(
        self, caller: Caller | None, method: str, path: str, **options: Any
    ) -> httpx.Response:
        """A call to messages_service."""
        headers = {**({} if caller is None else caller.headers), **options.pop("headers", {})}
        return await self.http.request(method, self.messages_url + path, headers=headers, **options)

    async def group(self, owner: Caller, *members: Caller, title: str = "Team") -> str:
        """A new group conversation of ``owner`` and ``members``; its id."""
        response = await self.http.post(
            f"{self.conversations_url}/api/conversations",
            headers=owner.headers,
            json={"kind": "group", "title": title, "member_ids": [m.id for m in members]},
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def remove_member(self, owner: Caller, conversation_id: str, member: Caller) -> None:
        response = await self.http.delete(
            f"{self.conversations_url}/api/conversations/{conversation_id}/members/{member.id}",
            headers=owner.headers,
        )
        assert response.status_code in (200, 204), response.text

    async def send(
        self,
        caller: Caller,
        conversation_id: str,
        body: str = "hello",
        *,
        client_msg_id: str | None = None,
        **extra: Any,
    ) -> httpx.Response:
        return await self.call(
            caller,
            "POST",
            f"/api/conversations/{conversation_id}/messages",
            json={"body": body, "client_msg_id": client_msg_id or uuid.uuid4().hex, **extra},
        )

    async def message(self, caller: Caller, conversation_id: str, body: str = "hello") -> Any:
        """Send ``body``; the new message."""
        response = await self.send(caller, conversation_id, body)
        assert response.status_code == 201, response.text
        return response.json()

    async def history(self, caller: Caller, conversation_id: str, **params: Any) -> Any:
        response = await self.call(
            caller, "GET", f"/api/conversations/{conversation_id}/messages", params=params
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def read(self, caller: Caller, conversation_id: str, seq: int) -> httpx.Response:
        return await self.call(
            caller, "POST", f"/api/conversations/{conversation_id}/read", json={"seq": seq}
        )

    async def unread(self, caller: Caller) -> dict[str, dict[str, int]]:
        """The caller's unread counts by conversation id."""
        response = await self.call(caller, "GET", "/api/unread")
        assert response.status_code == 200, response.text
        return {
            item["conversation_id"]: {k: v for k, v in item.items() if k != "conversation_id"}
            for item in response.json()["items"]
        }


def messages_environment(
    *,
    database_url: str,
    redis_url: str,
    namespace: str,
    issuer: LocalIssuer,
    conversations_url: str,
) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "DATABASE_POOL_SIZE": "5",
        "REDIS_URL": redis_url,
        "REDIS_NAMESPACE": namespace,
        "OIDC_ISSUER": issuer.url,
        "API_AUDIENCE": issuer.audience,
        "CONVERSATIONS_URL": conversations_url,
        "SERVICE_CLIENT_ID": SERVICE_CLIENT_ID,
        "SERVICE_CLIENT_SECRET": SERVICE_CLIENT_SECRET,
    }


MessagesStarter = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture(scope="module")
async def issuer() -> AsyncIterator[LocalIssuer]:
    async with running_issuer() as issuer:
        issuer.register_client(SERVICE_CLIENT_ID, SERVICE_CLIENT_SECRET, "parley.internal")
        yield issuer


@pytest.fixture(scope="module")
def event_namespace(redis_namespace: str) -> str:
    """This module's Redis namespace, shared by both services so member events flow."""
    return f"{redis_namespace}-messages-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
async def conversations(
    database_url: str, redis_url: str, event_namespace: str, issuer: LocalIssuer
) -> AsyncIterator[ConversationsServer]:
    async with serve_in_loop(everyone_directory()) as directory_url:
        server = ConversationsServer(
            {
                "DATABASE_URL": database_url,
                "DATABASE_POOL_SIZE": "4",
                "REDIS_URL": redis_url,
                "REDIS_NAMESPACE": event_namespace,
                "OIDC_ISSUER": issuer.url,
                "API_AUDIENCE": issuer.audience,
                "IDENTITY_URL": directory_url,
                "SERVICE_CLIENT_ID": SERVICE_CLIENT_ID,
                "SERVICE_CLIENT_SECRET": SERVICE_CLIENT_SECRET,
            }
        )
        await server.start()
        try:
            yield server
        finally:
            await server.stop()


@pytest.fixture(scope="module")
def conversations_url(conversations: ConversationsServer) -> str:
    return conversations.url


@pytest.fixture(scope="module")
def start_messages(
    database_url: str,
    redis_url: str,
    event_namespace: str,
    issuer: LocalIssuer,
    conversations_url: str,
) -> MessagesStarter:
    """Serves a messages_service; keyword arguments are environment variables to override."""

    @asynccontextmanager
    async def start(**environment: str) -> AsyncIterator[str]:
        settings = load_messages_settings(
            messages_environment(
                database_url=database_url,
                redis_url=redis_url,
                namespace=event_namespace,
                issuer=issuer,
                conversations_url=conversations_url,
            )
            | environment
        )
        async with serve_in_loop(create_messages_app(settings)) as url:
            yield url

    return start


@pytest.fixture(scope="module")
async def messages_url(start_messages: MessagesStarter) -> AsyncIterator[str]:
    async with start_messages() as url:
        yield url


@pytest.fixture(scope="module")
async def chat(
    messages_url: str, conversations_url: str, issuer: LocalIssuer
) -> AsyncIterator[Chat]:
    chat = Chat(messages_url, conversations_url, issuer)
    try:
        yield chat
    finally:
        await chat.http.aclose()


@asynccontextmanager
async def collected_events(
    redis_url: str, namespace: str, topic: str = MESSAGES_TOPIC, password: str | None = None
) -> AsyncIterator[list[Event]]:
    """Every event published on ``topic`` while the block runs, once subscribed."""
    client = redis.Redis.from_url(redis_url, password=password)
    events: list[Event] = []

    async def collect(event: Event) -> None:
        events.append(event)

    subscriber = EventBus(client, namespace).subscribe(collect, topics=[topic])
    try:
        async with subscriber:
            await eventually(lambda: subscriber.connected)
            yield events
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


async def eventually(condition: Callable[[], Any], *, within_seconds: float = 10.0) -> None:
    """Wait until ``condition()`` (sync or async) is true; fail after ``within_seconds``."""
    async with asyncio.timeout(within_seconds):
        while True:
            result = condition()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.05)
