"""Parley's own services wired together over real HTTP, as ``make run`` wires them.

``stack``: identity_service as the OpenID Provider (its issuer is its own URL), seeded by
``parley.seed`` with the demo people and clients for the BFF's URL; conversations_service,
messages_service and realtime_service trusting it and calling each other with the seeded service
client; and the BFF signing in through it, proxying ``/api/*`` to the services and relaying
``/realtime`` to realtime_service. One stack per module and database mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from conversations_service.app import create_app as create_conversations_app
from conversations_service.settings import load_settings as load_conversations_settings
from messages_service.app import create_app as create_messages_app
from messages_service.settings import load_settings as load_messages_settings
from parley.seed import DemoCredentials, seed_development_data
from realtime_service.app import create_app as create_realtime_app
from realtime_service.settings import load_settings as load_realtime_settings
from tests.bff.conftest import RunningBff, bff_environment, running_bff
from tests.identity_service.conftest import ServerStarter, start_identity_server
from tests.identity_service.support import IdentityServer
from tests.support.servers import free_port, serve_in_loop

__all__ = ["Stack", "stack", "start_identity_server"]

BFF_CLIENT_ID = "parley-bff"
BFF_CLIENT_SECRET = "e2e-bff-client-secret"  # the seeder registers whatever the BFF is given


@dataclass(frozen=True)
class Stack:
    identity: IdentityServer
    conversations_url: str
    messages_url: str
    realtime_url: str
    bff: RunningBff
    demo: DemoCredentials


@pytest.fixture(scope="module")
async def stack(
    start_identity_server: ServerStarter, database_url: str, redis_url: str, redis_namespace: str
) -> AsyncIterator[Stack]:
    # The BFF's port is chosen first: the seeder registers its redirect and logout URIs.
    bff_port = free_port()
    async with start_identity_server() as identity:
        environ = bff_environment(
            identity.url,
            redis_url,
            redis_namespace,
            PUBLIC_URL=f"http://127.0.0.1:{bff_port}",
            OIDC_CLIENT_ID=BFF_CLIENT_ID,
            OIDC_CLIENT_SECRET=BFF_CLIENT_SECRET,
            API_AUDIENCE=identity.audience,
            IDENTITY_URL=identity.url,
        )
        # The seeder runs its own event loop, so it gets a thread of its own.
        demo = await asyncio.to_thread(seed_development_data, database_url, environ)
        # The services' client is the seeded development one, which their settings default to.
        common = {
            "OIDC_ISSUER": identity.url,
            "API_AUDIENCE": identity.audience,
            "REDIS_URL": redis_url,
            "REDIS_NAMESPACE": redis_namespace,
        }
        conversations_settings = load_conversations_settings(
            common | {"DATABASE_URL": database_url, "IDENTITY_URL": identity.url}
        )
        async with (
            serve_in_loop(create_conversations_app(conversations_settings)) as conversations_url,
            serve_in_loop(
                create_messages_app(
                    load_messages_settings(
                        common
                        | {"DATABASE_URL": database_url, "CONVERSATIONS_URL": conversations_url}
                    )
                )
            ) as messages_url,
            serve_in_loop(create_realtime_app(load_realtime_settings(common))) as realtime_url,
        ):
            environ |= {
                "CONVERSATIONS_URL": conversations_url,
                "MESSAGES_URL": messages_url,
                "REALTIME_URL": realtime_url,
            }
            async with running_bff(environ, port=bff_port) as bff:
                yield Stack(identity, conversations_url, messages_url, realtime_url, bff, demo)
