"""The authorization pages: /authorize, sign-in and consent, rendered on the server.

An authorization request goes:

    GET /authorize ─ unknown client or unregistered redirect_uri ─► error page, never a redirect
        │          ─ any other invalid request ───────────────────► back to the client, ?error=
        ├─ signed in, first-party client ─────────────────────────► back to the client, ?code=
        ├─ signed in, another client ─► /consent ─ Allow ─► ?code=  ─ Deny ─► ?error=access_denied
        └─ not signed in, prompt=login, or max_age passed ─► /login ─► on as "signed in"

While the person signs in, the request waits in Redis (``PendingAuthorizations``) under an id the
page carries; every form has a CSRF token bound to this browser and to what the form completes.
The sign-in page links to registration and password reset with that id, and those pages lead
back to it (``sign_in_link``). The pages need no JavaScript, and their CSP allows none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from identity_service.clock import utc_now
from identity_service.oauth_server import (
    OAuthResponse,
    error_response,
    provider_request,
    read_form,
    request_parameters,
    run_oauth,
)
from identity_service.rendering import (
    FormField,
    Link,
    client_address,
    describe_wait,
    error_page,
    origin_of,
    render_form,
)
from identity_service.service import SignInRefused, Throttled
from identity_service.sessions import SignedInUser
from identity_service.state import current_user, identity_state

SIGN_IN_REFUSED: Final = "The email address or mobile number and password do not match."
SCOPE_DESCRIPTIONS: Final = {
    "openid": "know who you are",
    "profile": "see your name",
    "email": "see your email address",
    "phone": "see your mobile number",
    "offline_access": "keep you signed in",
}
FORCED_SIGN_IN_PROMPTS: Final = frozenset({"login", "select_account"})


def expired_page(request: Request) -> Response:
    return error_page(
        request,
        400,
        "This sign-in has expired",
        "Go back to the application you came from and sign in again.",
    )


def client_redirect(request: Request, response: OAuthResponse) -> Response:
    """An authorization response sent back to the client, naming this issuer (RFC 9207)."""
    location = response.location
    if location is None:
        return response.to_response()
    issuer = identity_state(request).provider.issuer
    # After a form POST, 303 tells the browser to follow with a GET.
    status = 303 if request.method == "POST" else 302
    return RedirectResponse(add_params_to_uri(location, {"iss": issuer}), status_code=status)


def authorization_error(request: Request, error: OAuth2Error) -> Response:
    """Back to the client when its redirect_uri has been validated; otherwise a page."""
    if error.redirect_uri:
        return client_redirect(request, error_response(error))
    return error_page(
        request,
        400,
        "This sign-in request is not valid",
        f"The application sent a request Parley cannot accept ({error.error}: "
        f"{error.get_error_description() or 'no details'}).",
    )


def _must_sign_in(grant: Any, user: SignedInUser | None) -> bool:
    if user is None or grant.prompt in FORCED_SIGN_IN_PROMPTS:
        return True
    max_age = grant.request.payload.data.get("max_age", "")
    if max_age.isdigit():
        return (utc_now() - user.auth_time).total_seconds() > int(max_age)
    return False


async def authorize(request: Request) -> Response:
    try:
        parameters = await request_parameters(request)
    except OAuth2Error as error:
        return authorization_error(request, error)
    return await continue_authorization(request, parameters)


async def continue_authorization(
    request: Request,
    parameters: Sequence[tuple[str, str]],
    *,
    pending_id: str | None = None,
    signed_in_now: SignedInUser | None = None,
    consent: bool | None = None,
) -> Response:
    """Carry an authorization request as far as it can go: to a code, an error, or a page that
    asks the person something. ``consent`` is None until they have answered the consent page."""
    state = identity_state(request)
    user = signed_in_now or await current_user(request)
    try:
        oauth_request = provider_request(request, state.provider.issuer, parameters)
        grant = await run_oauth(state.server.get_consent_grant, oauth_request, user)
    except OAuth2Error as error:
        return authorization_error(request, error)
    if user is None or (signed_in_now is None and _must_sign_in(grant, user)):
        pending_id = pending_id or await state.provider.pending.save(list(parameters))
        return RedirectResponse("/login?" + urlencode({"request": pending_id}), status_code=303)
    if consent is None and not grant.client.first_party:
        pending_id = pending_id or await state.provider.pending.save(list(parameters))
        return RedirectResponse("/consent?" + urlencode({"request": pending_id}), status_code=303)
    granted_to = None if consent is False else user
    response = await run_oauth(
        state.server.create_authorization_response, oauth_request, granted_to, grant
    )
    if pending_id is not None:
        await state.provider.pending.finish(pending_id)
    return client_redirect(request, response)


def sign_in_form(
    request: Request,
    pending_id: str,
    parameters: Sequence[tuple[str, str]],
    *,
    status: int = 200,
    error: str | None = None,
    field_errors: Mapping[str, str] | None = None,
    identifier: str = "",
) -> Response:
    values = dict(parameters)
    field_errors = field_errors or {}
    fields = [
        FormField(
            "identifier",
            "Email address or mobile number",
            autocomplete="username",
            value=identifier,
            error=field_errors.get("identifier"),
        ),
        FormField(
            "password",
            "Password",
            type="password",
            autocomplete="current-password",
            error=field_errors.get("password"),
        ),
    ]
    query = "?" + urlencode({"request": pending_id})
    return render_form(
        request,
        "sign_in.html",
        "sign-in:" + pending_id,
        {
            "client_id": values.get("client_id", ""),
            "pending_id": pending_id,
            "error": error,
            "fields": fields,
            "links": [
                Link("/reset" + query, "Forgot your password?"),
                Link("/register" + query, "New to Parley? Create an account"),
            ],
        },
        status=status,
        form_targets=origin_of(values.get("redirect_uri")),
    )


async def sign_in_link(request: Request, pending_id: str) -> Link | None:
    """Back to the sign-in page of a waiting authorization request (from registration or
    password reset, which the sign-in page links to), if it still waits."""
    if not pending_id or await identity_state(request).provider.pending.get(pending_id) is None:
        return None
    return Link("/login?" + urlencode({"request": pending_id}), "Continue to sign in")


async def sign_in_page(request: Request) -> Response:
    pending_id = request.query_params.get("request", "")
    parameters = await identity_state(request).provider.pending.get(pending_id)
    if parameters is None:
        return expired_page(request)
    return sign_in_form(request, pending_id, parameters)


async def submit_sign_in(request: Request) -> Response:
    state = identity_state(request)
    try:
        form = dict(await read_form(request))
    except OAuth2Error:
        return error_page(request, 400, "Sign-in failed", "The form could not be read.")
    pending_id = form.get("request", "")
    parameters = await state.provider.pending.get(pending_id)
    if parameters is None:
        return expired_page(request)
    if not state.cookies.csrf_is_valid(
        request, form.get("csrf_token", ""), "sign-in:" + pending_id
    ):
        return error_page(
            request,
            403,
            "This form has expired",
            "The sign-in form was not sent from this browser's sign-in page.",
            retry_url="/login?" + urlencode({"request": pending_id}),
        )
    identifier, password = form.get("identifier", "").strip(), form.get("password", "")
    field_errors = {}
    if not identifier:
        field_errors["identifier"] = "Enter your email address or mobile number."
    if not password:
        field_errors["password"] = "Enter your password."  # noqa: S105 - a message
    if field_errors:
        return sign_in_form(
            request,
            pending_id,
            parameters,
            status=400,
            field_errors=field_errors,
            identifier=identifier,
        )
    try:
        user = await state.sign_in.sign_in(identifier, password, client_address(request), utc_now())
    except Throttled as throttled:
        wait = throttled.retry_after_seconds
        response = sign_in_form(
            request,
            pending_id,
            parameters,
            status=429,
            error=f"Too many sign-in attempts. Try again in {describe_wait(wait)}.",
            identifier=identifier,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    except SignInRefused:
        return sign_in_form(
            request,
            pending_id,
            parameters,
            status=400,
            error=SIGN_IN_REFUSED,
            identifier=identifier,
        )
    response = await continue_authorization(
        request, parameters, pending_id=pending_id, signed_in_now=user
    )
    lifetime = int((user.session_expires_at - user.auth_time).total_seconds())
    state.cookies.set_session(response, user.session_id, lifetime)
    return response


async def consent_page(request: Request) -> Response:
    state = identity_state(request)
    pending_id = request.query_params.get("request", "")
    parameters = await state.provider.pending.get(pending_id)
    if parameters is None:
        return expired_page(request)
    user = await current_user(request)
    if user is None:
        return RedirectResponse("/login?" + urlencode({"request": pending_id}), status_code=303)
    values = dict(parameters)
    scopes = values.get("scope", "").split()
    return render_form(
        request,
        "consent.html",
        "consent:" + pending_id,
        {
            "client_id": values.get("client_id", ""),
            "display_name": user.account.display_name,
            "pending_id": pending_id,
            "scope_descriptions": [
                SCOPE_DESCRIPTIONS.get(scope, f"use the “{scope}” permission") for scope in scopes
            ],
        },
        form_targets=origin_of(values.get("redirect_uri")),
    )


async def submit_consent(request: Request) -> Response:
    state = identity_state(request)
    try:
        form = dict(await read_form(request))
    except OAuth2Error:
        return error_page(request, 400, "Consent failed", "The form could not be read.")
    pending_id = form.get("request", "")
    parameters = await state.provider.pending.get(pending_id)
    if parameters is None:
        return expired_page(request)
    if not state.cookies.csrf_is_valid(
        request, form.get("csrf_token", ""), "consent:" + pending_id
    ):
        return error_page(request, 403, "This form has expired", "Go back and try again.")
    return await continue_authorization(
        request, parameters, pending_id=pending_id, consent=form.get("decision") == "allow"
    )
