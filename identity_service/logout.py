"""RP-initiated logout (OpenID RP-Initiated Logout 1.0), then back-channel logout."""

from __future__ import annotations

import uuid

from authlib.oauth2 import OAuth2Error
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from identity_service.clock import utc_now
from identity_service.oauth_server import provider_request, request_parameters, run_oauth
from identity_service.rendering import error_page, render, render_form
from identity_service.service import end_sessions
from identity_service.state import current_user, identity_state


async def logout(request: Request) -> Response:
    """GET or POST ``/logout``.

    With a valid ``id_token_hint`` the session it names (and this browser's, if it is the same
    person's) ends at once, and the browser goes back to the registered
    ``post_logout_redirect_uri`` with ``state``. Without one, the person confirms first and stays
    here. Clients of the ended sessions are told by back-channel logout, after the response.
    """
    state = identity_state(request)
    try:
        parameters = await request_parameters(request)
    except OAuth2Error:
        return sign_out_form(request, status=400, error="The sign-out request could not be read.")
    submitted = dict(parameters).pop("csrf_token", None)
    if submitted is not None and not state.cookies.csrf_is_valid(request, submitted, "sign-out"):
        return error_page(request, 403, "This form has expired", "Go back and try again.")
    try:
        # A valid csrf_token stays in: it tells the endpoint the person confirmed (endpoints.py).
        oauth_request = provider_request(request, state.provider.issuer, parameters)
        validated = await run_oauth(
            state.server.validate_endpoint_request, "end_session", oauth_request
        )
    except OAuth2Error:
        return sign_out_form(
            request,
            status=400,
            error="This sign-out link is not valid: you will stay here after signing out.",
        )
    user = await current_user(request)
    claims = validated.id_token_claims
    if claims is None and submitted is None:
        if user is None:
            return signed_out_page(request)
        return sign_out_form(request, carried=_carried_parameters(parameters))
    session_ids = []
    if claims is not None and (hinted := _session_id(claims.get("sid"))) is not None:
        session_ids.append(hinted)
    if user is not None and (claims is None or claims.get("sub") == user.get_user_id()):
        session_ids.append(user.session_id)
    ended = await end_sessions(state.provider.sessions, session_ids, utc_now())
    if validated.redirect_uri:
        response: Response = RedirectResponse(validated.redirect_uri, status_code=303)
    else:
        response = signed_out_page(request)
    state.cookies.clear_session(response)
    response.background = BackgroundTask(state.backchannel.notify, ended)
    return response


def _session_id(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


# What the confirmation form carries to its POST, so a confirmed sign-out can still return to
# the client that asked for it.
_CARRIED_PARAMETERS = ("client_id", "post_logout_redirect_uri", "state", "ui_locales")


def _carried_parameters(parameters: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in parameters if name in _CARRIED_PARAMETERS]


def sign_out_form(
    request: Request,
    *,
    status: int = 200,
    error: str | None = None,
    carried: list[tuple[str, str]] | None = None,
) -> Response:
    return render_form(
        request,
        "sign_out.html",
        "sign-out",
        {"error": error, "carried": carried or []},
        status=status,
    )


def signed_out_page(request: Request) -> Response:
    return render(request, "signed_out.html", {})
