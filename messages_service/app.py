"""messages_service owns what was said: ordered history, receipts, reactions, search.

Routes are listed in routes.py. Built once here and kept on ``app.state``: the database, Redis,
the outbox (events after commit, relayed later when Redis was down), the bearer-token check
(``authentication``), the membership client for conversations_service (``membership``), and the
service (``messages``). Background work started by the lifespan, in every instance:

- the outbox relay (servicekit/outbox.py);
- the subscription to conversations_service's events that keeps the membership cache honest;
- the activity reporter (activity.py) and the retention job (retention.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Final

import httpx
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from messages_service.activity import ActivityReporter
from messages_service.membership import Membership
from messages_service.pointers import PointerStore
from messages_service.retention import RetentionJob
from messages_service.routes import ROUTES
from messages_service.service import MessagesService
from messages_service.settings import MessagesSettings
from messages_service.store import MessageStore
from messages_service.tables import outbox as outbox_table
from messages_service.throttle import SendThrottle
from servicekit.app import create_service_app
from servicekit.authentication import BearerAuthentication
from servicekit.db import Database, is_retryable
from servicekit.errors import ServiceUnavailable, handle_unexpected_error, problem_response
from servicekit.events import EventBus
from servicekit.http import CircuitBreaker, UpstreamClient
from servicekit.internal import service_token_source
from servicekit.outbox import Outbox
from servicekit.redis_client import RedisConnection

CONVERSATIONS_TOPIC: Final = "conversations"
# Seconds. After conversations_service failed repeatedly, calls fail fast for this long, then one
# trial call goes through; short, because membership is on every request and restarts are quick.
CONVERSATIONS_BREAKER_RESET_SECONDS: Final = 3.0
TOKEN_HTTP_TIMEOUT_SECONDS: Final = 5.0  # the identity provider's token endpoint
CONTENTION_RETRY_AFTER_SECONDS: Final = 1


async def answer_lasting_conflict(request: Request, error: Exception) -> Response:
    """A transaction that lost every retry to conflicts (a very hot conversation) is a 503 the
    client may retry (sends are idempotent); any other database error stays an opaque 500."""
    if not is_retryable(error):
        return await handle_unexpected_error(request, error)
    return problem_response(
        ServiceUnavailable(
            "The conversation is too busy right now; try again.",
            code="contention",
            retry_after=CONTENTION_RETRY_AFTER_SECONDS,
        ),
        request.url.path,
    )


def create_app(settings: MessagesSettings) -> Starlette:
    database = Database(settings.database_url, pool_size=settings.database_pool_size)
    redis_connection = RedisConnection(settings.redis_url)
    bus = EventBus(redis_connection.client, settings.redis_namespace)
    outbox = Outbox(database, bus, outbox_table)
    token_http = httpx.AsyncClient(timeout=TOKEN_HTTP_TIMEOUT_SECONDS)
    tokens = service_token_source(settings, token_http)
    conversations = UpstreamClient(
        "conversations_service",
        settings.conversations_url,
        breaker=CircuitBreaker(reset_timeout=CONVERSATIONS_BREAKER_RESET_SECONDS),
    )
    membership = Membership(conversations, tokens)
    subscriber = bus.subscribe(
        membership.handle_event,
        topics=[CONVERSATIONS_TOPIC],
        on_reconnect=membership.on_reconnect,
    )
    membership.trust_cache_while(lambda: subscriber.connected)
    store = MessageStore(database, outbox)
    throttle = SendThrottle(
        redis_connection.client, settings.redis_namespace, settings.send_rate_limits
    )
    activity = ActivityReporter(database, conversations, tokens)
    retention = RetentionJob(database, settings.retention_days, settings.retention_interval_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        outbox.start()
        subscriber.start()
        activity.start()
        retention.start()
        try:
            yield
        finally:
            await retention.close()
            await activity.close()
            await subscriber.stop()
            await outbox.close()
            await conversations.aclose()
            await token_http.aclose()

    app = create_service_app(
        settings,
        routes=ROUTES,
        dependencies={"database": database, "redis": redis_connection},
        resources={"outbox": outbox, "authentication": BearerAuthentication(settings)},
        lifespan=lifespan,
    )
    app.add_exception_handler(DBAPIError, answer_lasting_conflict)
    app.state.membership = membership
    app.state.messages = MessagesService(
        store, PointerStore(database, outbox), membership, throttle
    )
    return app
