"""The registration and email verification pages.

    GET|POST /register?request=…   the form; afterwards a page that is the same whether or not
                                   the details were new (see registration.py)
    GET      /verify?token=…       the link mailed to a new address

``request`` is the authorization request the person was signing in to, when they came from the
sign-in page: the pages then lead back to it, where they sign in with their new account.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Final

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from identity_service.account_mail import hours
from identity_service.account_tokens import EMAIL_VERIFICATION_HOURS, Verification
from identity_service.clock import utc_now
from identity_service.mail import deliver
from identity_service.pages import sign_in_link
from identity_service.passwords import MIN_PASSWORD_LENGTH
from identity_service.registration import Registered, RegistrationForm
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
from identity_service.service import MAX_DISPLAY_NAME_LENGTH, InvalidDetails, Throttled
from identity_service.state import identity_state

PURPOSE: Final = "register"
REGISTRATION_FIELDS: Final = (
    FormField(
        "display_name",
        "Your name",
        autocomplete="name",
        hint="As others will see it in Parley.",
        max_length=MAX_DISPLAY_NAME_LENGTH,
    ),
    FormField(
        "email",
        "Email address",
        type="email",
        autocomplete="email",
        hint="We will send a link to verify it.",
        required=False,
    ),
    FormField(
        "phone",
        "Mobile number",
        type="tel",
        autocomplete="tel",
        hint="With its country code, e.g. +44 7700 900123. We can't verify mobile numbers yet, "
        "so a number alone cannot recover a forgotten password.",
        required=False,
    ),
    FormField(
        "password",
        "Password",
        type="password",
        autocomplete="new-password",
        hint=f"At least {MIN_PASSWORD_LENGTH} characters. A few unrelated words make a strong one.",
    ),
)


def registration_form(
    request: Request,
    pending_id: str,
    sign_in: Link | None,
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    values, errors = values or {}, errors or {}
    fields = [
        replace(
            field,
            # A form shown again keeps what was typed, except the password.
            value="" if field.type == "password" else values.get(field.name, ""),
            error=errors.get(field.name),
        )
        for field in REGISTRATION_FIELDS
    ]
    links = [Link(sign_in.href, "Already have an account? Sign in")] if sign_in else []
    return render_form(
        request,
        "form.html",
        PURPOSE,
        {
            "title": "Create your Parley account",
            "lead": "Give an email address, a mobile number or both: you can sign in with either.",
            "action": "/register",
            "hidden": {"request": pending_id},
            "fields": fields,
            "error": error,
            "submit": "Create account",
            "links": links,
        },
        status=status,
    )


async def registration_page(request: Request) -> Response:
    pending_id = request.query_params.get("request", "")
    return registration_form(request, pending_id, await sign_in_link(request, pending_id))


async def submit_registration(request: Request) -> Response:
    try:
        form = await read_checked_form(request, PURPOSE, "/register")
    except FormRejected as rejected:
        return rejected.response
    pending_id = form.get("request", "")
    sign_in = await sign_in_link(request, pending_id)
    values = {field.name: form.get(field.name, "") for field in REGISTRATION_FIELDS}
    registration = RegistrationForm(
        email=values["email"].strip(),
        phone=values["phone"].strip(),
        display_name=values["display_name"],
        password=values["password"],
    )
    state = identity_state(request)
    try:
        registered = await state.registration.register(
            registration, client_address(request), utc_now()
        )
    except InvalidDetails as invalid:
        return registration_form(
            request, pending_id, sign_in, values=values, errors=invalid.errors, status=400
        )
    except Throttled as throttled:
        wait = throttled.retry_after_seconds
        response = registration_form(
            request,
            pending_id,
            sign_in,
            values=values,
            error=f"Too many registrations. Try again in {describe_wait(wait)}.",
            status=429,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    response = registered_page(request, registered, sign_in)
    response.background = BackgroundTask(deliver, state.mailer, registered.mails)
    return response


def registered_page(request: Request, registered: Registered, sign_in: Link | None) -> Response:
    """What registering says: the same whether or not the details were already taken."""
    paragraphs = []
    if registered.email is not None:
        heading = "Check your inbox"
        paragraphs.append(
            f"We have sent a message to {registered.email}. Follow the link in it within "
            f"{hours(EMAIL_VERIFICATION_HOURS)} to verify your address."
        )
        paragraphs.append(
            "You can sign in already; your address shows as unverified until you follow the link."
        )
    else:
        heading = "Registration received"
        paragraphs.append(
            f"Sign in with {registered.phone} and the password you chose. If that number was "
            "registered before, sign in with that account's password instead."
        )
    if registered.phone is not None:
        paragraphs.append("We can't verify mobile numbers yet, so your number shows as unverified.")
    if sign_in is None:
        paragraphs.append("Go back to the application you came from to sign in.")
    return notice_page(request, heading, paragraphs, [sign_in] if sign_in else [])


async def verify_email(request: Request) -> Response:
    """``GET /verify?token=…``: following the link again says so, never fails."""
    token = request.query_params.get("token", "")
    outcome = await identity_state(request).registration.verify_email(token, utc_now())
    if outcome is Verification.VERIFIED:
        return notice_page(
            request,
            "Your email address is verified",
            ["Thank you. You can close this page and carry on in Parley."],
        )
    if outcome is Verification.ALREADY_VERIFIED:
        return notice_page(
            request,
            "Your email address is already verified",
            ["This link has been used before. There is nothing more to do."],
        )
    heading = (
        "This link has expired" if outcome is Verification.EXPIRED else "This link is not valid"
    )
    return error_page(
        request,
        400,
        heading,
        f"Verification links work once, for {hours(EMAIL_VERIFICATION_HOURS)}. Resetting your "
        "password verifies your address too.",
        retry_url="/reset",
        retry_text="Reset your password",
    )
