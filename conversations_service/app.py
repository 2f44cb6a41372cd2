"""conversations_service owns conversations, their members and invitations.

POST|GET          /api/conversations
GET|PATCH|DELETE  /api/conversations/{conversation_id}
GET|POST          /api/conversations/{conversation_id}/members
PATCH|DELETE      /api/conversations/{conversation_id}/members/{user_id}
GET|POST          /api/conversations/{conversation_id}/invitations
GET               /api/invitations
POST              /api/invitations/{invitation_id}/accept | decline | revoke
GET               /api/conversations_service/openapi.json
GET               /internal/conversations/{conversation_id}/members     (services only)
GET               /internal/users/{user_id}/conversations               (services only)
POST              /internal/activity                                    (services only)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Final

import httpx
from starlette.applications import Starlette
from starlette.routing import Route

from conversations_service import internal_routes, routes
from conversations_service.directory import Directory
from conversations_service.invitations import InvitationService
from conversations_service.openapi import openapi_document
from conversations_service.service import ConversationService
from conversations_service.settings import ConversationsSettings
from conversations_service.state import ConversationsState
from conversations_service.tables import outbox as outbox_table
from servicekit.app import create_service_app
from servicekit.authentication import BearerAuthentication
from servicekit.client_credentials import ClientCredentialsTokenSource
from servicekit.db import Database
from servicekit.events import EventBus
from servicekit.http import UpstreamClient
from servicekit.internal import INTERNAL_SCOPE
from servicekit.outbox import Outbox
from servicekit.redis_client import RedisConnection

# Seconds; the token endpoint answers quickly or not at all.
TOKEN_HTTP_TIMEOUT: Final = httpx.Timeout(5.0, connect=2.0)


def build_directory(settings: ConversationsSettings, database: Database) -> Directory:
    """The directory, asking identity_service when ``IDENTITY_URL`` is configured."""
    if settings.identity_url is None:
        return Directory(database)
    token_http_client = httpx.AsyncClient(timeout=TOKEN_HTTP_TIMEOUT)
    # servicekit.internal.service_token_source builds the same source from ServiceClientSettings;
    # this service's client settings are optional in production (see settings.py), so it cannot.
    tokens = ClientCredentialsTokenSource(
        token_http_client,
        client_id=settings.service_client_id,
        client_secret=settings.service_client_secret,
        audience=settings.api_audience,
        scopes=(INTERNAL_SCOPE,),
        issuer=settings.oidc_issuer,
    )
    people = UpstreamClient("identity_service", settings.identity_url)
    return Directory(database, people, tokens, token_http_client)


def create_app(settings: ConversationsSettings) -> Starlette:
    database = Database(settings.database_url, pool_size=settings.database_pool_size)
    redis_connection = RedisConnection(settings.redis_url)
    outbox = Outbox(
        database, EventBus(redis_connection.client, settings.redis_namespace), outbox_table
    )
    authentication = BearerAuthentication(settings)
    directory = build_directory(settings, database)
    conversations = ConversationService(database, outbox, directory)
    state = ConversationsState(
        authentication=authentication,
        directory=directory,
        conversations=conversations,
        invitations=InvitationService(
            database,
            outbox,
            directory,
            conversations,
            timedelta(seconds=settings.invitation_lifetime_seconds),
        ),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        outbox.start()
        try:
            yield
        finally:
            # Before the shared lifespan closes the database under the relay (closing twice is
            # harmless, and the outbox is a resource too in case start-up fails part-way).
            await outbox.close()

    conversation = "/api/conversations/{conversation_id}"
    invitation = "/api/invitations/{invitation_id}"
    app = create_service_app(
        settings,
        routes=[
            Route("/api/conversations", routes.create_conversation, methods=["POST"]),
            Route("/api/conversations", routes.list_conversations, methods=["GET"]),
            Route(conversation, routes.get_conversation, methods=["GET"]),
            Route(conversation, routes.update_conversation, methods=["PATCH"]),
            Route(conversation, routes.delete_conversation, methods=["DELETE"]),
            Route(f"{conversation}/members", routes.list_members, methods=["GET"]),
            Route(f"{conversation}/members", routes.add_member, methods=["POST"]),
            Route(f"{conversation}/members/{{user_id}}", routes.update_member, methods=["PATCH"]),
            Route(f"{conversation}/members/{{user_id}}", routes.remove_member, methods=["DELETE"]),
            Route(
                f"{conversation}/invitations",
                routes.list_conversation_invitations,
                methods=["GET"],
            ),
            Route(f"{conversation}/invitations", routes.create_invitation, methods=["POST"]),
            Route("/api/invitations", routes.list_my_invitations, methods=["GET"]),
            Route(f"{invitation}/accept", routes.accept_invitation, methods=["POST"]),
            Route(f"{invitation}/decline", routes.decline_invitation, methods=["POST"]),
            Route(f"{invitation}/revoke", routes.revoke_invitation, methods=["POST"]),
            Route("/api/conversations_service/openapi.json", openapi_document, methods=["GET"]),
            Route(
                "/internal/conversations/{conversation_id}/members",
                internal_routes.conversation_members,
                methods=["GET"],
            ),
            Route(
                "/internal/users/{user_id}/conversations",
                internal_routes.user_conversations,
                methods=["GET"],
            ),
            Route("/internal/activity", internal_routes.record_activity, methods=["POST"]),
        ],
        dependencies={"database": database, "redis": redis_connection},
        resources={"outbox": outbox, "authentication": authentication, "directory": directory},
        lifespan=lifespan,
    )
    app.state.conversations = state
    return app
