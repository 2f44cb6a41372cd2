"""Calls between Parley's services: who may make them and how a service gets its token.

Internal endpoints (``/internal/...``) answer other services only. A service proves it is one with
an access token from the client-credentials grant that carries the ``parley.internal`` scope; the
provider grants that scope only to the clients an operator registers for services. A person's
token, or a bot's without that scope, is refused with 403 whatever it would otherwise allow.
"""

from __future__ import annotations

from typing import Final

import httpx

from servicekit.client_credentials import ClientCredentialsTokenSource
from servicekit.errors import InsufficientScope
from servicekit.settings import ServiceClientSettings
from servicekit.tokens import Principal

INTERNAL_SCOPE: Final = "parley.internal"


def require_internal_caller(principal: Principal) -> None:
    """Refuse anyone but a service: a machine client whose token has ``INTERNAL_SCOPE``."""
    if principal.kind != "machine" or INTERNAL_SCOPE not in principal.scopes:
        raise InsufficientScope(
            "This endpoint is for Parley's services only.",
            code="internal_only",
            headers={
                "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{INTERNAL_SCOPE}"'
            },
        )


def service_token_source(
    settings: ServiceClientSettings, http_client: httpx.AsyncClient
) -> ClientCredentialsTokenSource:
    """Tokens with which this service calls the others (audience ``API_AUDIENCE``)."""
    return ClientCredentialsTokenSource(
        http_client,
        client_id=settings.service_client_id,
        client_secret=settings.service_client_secret,
        audience=settings.api_audience,
        scopes=(INTERNAL_SCOPE,),
        issuer=settings.oidc_issuer,
    )
