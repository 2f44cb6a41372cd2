"""The provider's protocol endpoints (JSON) and the people directory API.

OAuth endpoints answer errors in RFC 6749 §5.2 form (``{"error", "error_description"}``), as
clients of any OAuth provider expect; Parley's own API (``/api/users``) answers with
problem+json like every other Parley service.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from authlib.oauth2 import OAuth2Error
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from identity_service.clients import CLIENT_AUTH_METHODS, WEB_CLIENT_SCOPES
from identity_service.clock import utc_now
from identity_service.jwt_tokens import user_claims
from identity_service.keys import SIGNING_ALGORITHM
from identity_service.oauth_server import (
    OAuthResponse,
    check_basic_credentials,
    error_response,
    provider_request,
    read_form,
    run_oauth,
)
from identity_service.service import search_directory
from identity_service.state import identity_state
from identity_service.store import Account
from servicekit.errors import InsufficientScope, NotFound, Unauthorized, ValidationFailed
from servicekit.tokens import Principal, bearer_token_from_header

DIRECTORY_DEFAULT_LIMIT: Final = 20
DIRECTORY_MAX_LIMIT: Final = 50
DIRECTORY_MAX_QUERY_LENGTH: Final = 100
# Machine clients read the directory with either of these scopes.
DIRECTORY_MACHINE_SCOPES: Final = frozenset({"chat.read", "parley.internal"})
PUBLIC_DOCUMENT_CACHE: Final = "public, max-age=300"  # seconds; discovery changes with deploys
JWKS_CACHE: Final = "public, max-age=60"  # seconds; a rotated key must appear promptly


async def discovery(request: Request) -> Response:
    issuer = identity_state(request).provider.issuer
    document = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks",
        "revocation_endpoint": f"{issuer}/revoke",
        "end_session_endpoint": f"{issuer}/logout",
        "scopes_supported": list(WEB_CLIENT_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [SIGNING_ALGORITHM],
        "token_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            *("sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "amr"),
            *("name", "email", "email_verified", "phone_number", "phone_number_verified"),
        ],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "authorization_response_iss_parameter_supported": True,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
    }
    return JSONResponse(document, headers={"Cache-Control": PUBLIC_DOCUMENT_CACHE})


async def jwks(request: Request) -> Response:
    keys = await identity_state(request).provider.keys.published_keys(utc_now())
    return JSONResponse({"keys": keys}, headers={"Cache-Control": JWKS_CACHE})


async def token(request: Request) -> Response:
    state = identity_state(request)
    try:
        check_basic_credentials(request.headers)
        oauth_request = provider_request(request, state.provider.issuer, await read_form(request))
    except OAuth2Error as error:
        return error_response(error).to_response()
    response = await run_oauth(state.server.create_token_response, oauth_request)
    return response.to_response()


async def revoke(request: Request) -> Response:
    """RFC 7009; refresh tokens only (see endpoints.py for why access tokens are not)."""
    state = identity_state(request)
    try:
        check_basic_credentials(request.headers)
        oauth_request = provider_request(request, state.provider.issuer, await read_form(request))
    except OAuth2Error as error:
        return error_response(error).to_response()
    response: OAuthResponse = await run_oauth(
        state.server.create_endpoint_response, "revocation", oauth_request
    )
    return response.to_response()


async def authenticate(request: Request) -> Principal:
    """The principal of the request's bearer access token (for API_AUDIENCE)."""
    token = bearer_token_from_header(request.headers.get("Authorization"))
    return await identity_state(request).verifier.verify(token)


async def userinfo(request: Request) -> Response:
    """OpenID Core §5.3: the signed-in person's claims, as the token's scope allows."""
    principal = await authenticate(request)
    if principal.kind != "user" or "openid" not in principal.scopes:
        raise InsufficientScope(
            "The access token was not issued to a person with the openid scope.",
            headers={"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="openid"'},
        )
    account = await _enabled_account(request, principal.subject)
    if account is None:
        raise Unauthorized(
            "The account no longer exists.",
            code="invalid_token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return JSONResponse(user_claims(account, " ".join(principal.scopes)))


def public_profile(account: Account) -> dict[str, Any]:
    """What the directory shows of a person: never a password hash or a phone number."""
    return {"id": str(account.id), "display_name": account.display_name, "email": account.email}


async def _directory_reader(request: Request) -> Principal:
    principal = await authenticate(request)
    if principal.kind == "machine" and not principal.scopes & DIRECTORY_MACHINE_SCOPES:
        raise InsufficientScope("Reading the directory needs the scope 'chat.read'.")
    return principal


async def list_users(request: Request) -> Response:
    """``GET /api/users?q=&limit=&cursor=``: enabled people whose name or email contains q."""
    await _directory_reader(request)
    parameters = request.query_params
    errors = []
    query = parameters.get("q", "").strip()
    if len(query) > DIRECTORY_MAX_QUERY_LENGTH or "\x00" in query:
        errors.append(
            {"field": "q", "message": f"At most {DIRECTORY_MAX_QUERY_LENGTH} characters."}
        )
    limit_text = parameters.get("limit", str(DIRECTORY_DEFAULT_LIMIT))
    limit = int(limit_text) if limit_text.isdigit() and len(limit_text) < 4 else 0
    if not 1 <= limit <= DIRECTORY_MAX_LIMIT:
        errors.append({"field": "limit", "message": f"An integer from 1 to {DIRECTORY_MAX_LIMIT}."})
    if errors:
        raise ValidationFailed("The query is not valid.", errors=errors)
    try:
        page = await search_directory(
            identity_state(request).provider.accounts, query, parameters.get("cursor"), limit
        )
    except ValueError as error:
        raise ValidationFailed(
            "The cursor is not valid.",
            errors=[{"field": "cursor", "message": "Use a next_cursor from a previous page."}],
        ) from error
    return JSONResponse(
        {
            "items": [public_profile(account) for account in page.accounts],
            "next_cursor": page.next_cursor,
        }
    )


async def get_user(request: Request) -> Response:
    """``GET /api/users/{id}``: one enabled person; 404 for unknown, disabled or malformed ids."""
    await _directory_reader(request)
    account = await _enabled_account(request, request.path_params["user_id"])
    if account is None:
        raise NotFound("There is no such user.", code="user_not_found")
    return JSONResponse(public_profile(account))


async def _enabled_account(request: Request, account_id: str) -> Account | None:
    try:
        parsed = uuid.UUID(account_id)
    except ValueError:
        return None
    account = await identity_state(request).provider.accounts.get_account(parsed)
    return account if account is not None and account.disabled_at is None else None
