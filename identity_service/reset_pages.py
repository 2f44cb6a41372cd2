"""The password reset pages.

    GET|POST /reset?request=…        ask for a link; the answer never tells whether an account
                                     matched (see password_reset.py)
    GET|POST /reset/confirm?token=…  the mailed link: choose a new password

After a new password is set, this browser's sign-in cookie is cleared, and the clients of every
session the reset ended are told by back-channel logout, after the response.
"""

from __future__ import annotations

from typing import Final

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from identity_service.account_mail import hours
from identity_service.account_tokens import PASSWORD_RESET_HOURS
from identity_service.clock import utc_now
from identity_service.identifiers import InvalidIdentifier
from identity_service.mail import deliver
from identity_service.pages import sign_in_link
from identity_service.passwords import MIN_PASSWORD_LENGTH
from identity_service.rendering import (
    FormField,
    FormRejected,
    Link,
    client_address,
    describe_wait,
    error_page,
    notice_page,
    read_checked_form,
    render_form,
)
from identity_service.service import InvalidDetails, Throttled
from identity_service.state import identity_state

REQUEST_PURPOSE: Final = "reset"
CONFIRM_PURPOSE: Final = "reset-confirm"


def reset_request_form(
    request: Request,
    pending_id: str,
    sign_in: Link | None,
    *,
    identifier: str = "",
    field_error: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    field = FormField(
        "identifier",
        "Email address or mobile number",
        autocomplete="username",
        value=identifier,
        error=field_error,
    )
    return render_form(
        request,
        "form.html",
        REQUEST_PURPOSE,
        {
            "title": "Reset your password",
            "lead": "We will email you a link to choose a new password.",
            "action": "/reset",
            "hidden": {"request": pending_id},
            "fields": [field],
            "error": error,
            "submit": "Send the link",
            "links": [Link(sign_in.href, "Back to sign in")] if sign_in else [],
        },
        status=status,
    )


async def reset_request_page(request: Request) -> Response:
    pending_id = request.query_params.get("request", "")
    return reset_request_form(request, pending_id, await sign_in_link(request, pending_id))


async def submit_reset_request(request: Request) -> Response:
    try:
        form = await read_checked_form(request, REQUEST_PURPOSE, "/reset")
    except FormRejected as rejected:
        return rejected.response
    pending_id = form.get("request", "")
    sign_in = await sign_in_link(request, pending_id)
    identifier = form.get("identifier", "").strip()
    state = identity_state(request)
    try:
        mails = await state.password_reset.request_link(
            identifier, client_address(request), utc_now()
        )
    except InvalidIdentifier as invalid:
        return reset_request_form(
            request,
            pending_id,
            sign_in,
            identifier=identifier,
            field_error=str(invalid) if identifier else "Enter your email address or number.",
            status=400,
        )
    except Throttled as throttled:
        wait = throttled.retry_after_seconds
        response = reset_request_form(
            request,
            pending_id,
            sign_in,
            identifier=identifier,
            error=f"Too many reset requests. Try again in {describe_wait(wait)}.",
            status=429,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    response = notice_page(
        request,
        "Check your inbox",
        [
            f"If an account has {identifier}, we have sent a link to its email address. The "
            f"link works once, within {hours(PASSWORD_RESET_HOURS)}.",
            "Accounts with only a mobile number cannot reset their password here yet: ask "
            "your Parley administrator.",
        ],
        [sign_in] if sign_in else [],
    )
    response.background = BackgroundTask(deliver, state.mailer, mails)
    return response


def link_unusable_page(request: Request) -> Response:
    return error_page(
        request,
        400,
        "This link has expired or has been used",
        f"Reset links work once, within {hours(PASSWORD_RESET_HOURS)} of being sent.",
        retry_url="/reset",
        retry_text="Ask for a new link",
    )


def new_password_form(
    request: Request, token: str, *, error: str | None = None, status: int = 200
) -> Response:
    field = FormField(
        "password",
        "New password",
        type="password",
        autocomplete="new-password",
        hint=f"At least {MIN_PASSWORD_LENGTH} characters. A few unrelated words make a strong one.",
        error=error,
    )
    return render_form(
        request,
        "form.html",
        CONFIRM_PURPOSE,
        {
            "title": "Choose a new password",
            "lead": "Choosing a new password signs you out everywhere.",
            "action": "/reset/confirm",
            "hidden": {"token": token},
            "fields": [field],
            "error": None,
            "submit": "Set the new password",
            "links": [],
        },
        status=status,
    )


async def new_password_page(request: Request) -> Response:
    token = request.query_params.get("token", "")
    if await identity_state(request).password_reset.account_to_reset(token, utc_now()) is None:
        return link_unusable_page(request)
    return new_password_form(request, token)


async def submit_new_password(request: Request) -> Response:
    state = identity_state(request)
    try:
        form = await read_checked_form(request, CONFIRM_PURPOSE, "/reset")
    except FormRejected as rejected:
        return rejected.response
    token = form.get("token", "")
    try:
        changed = await state.password_reset.choose_password(
            token, form.get("password", ""), utc_now()
        )
    except InvalidDetails as invalid:
        return new_password_form(request, token, error=invalid.errors["password"], status=400)
    if changed is None:
        return link_unusable_page(request)
    response = notice_page(
        request,
        "Your password has been changed",
        [
            "You have been signed out everywhere. Sign in again with your new password from "
            "the application you use Parley in."
        ],
    )
    state.cookies.clear_session(response)
    response.background = BackgroundTask(state.backchannel.notify, changed.ended_sessions)
    return response
