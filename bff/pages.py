"""The few HTML pages the BFF renders itself: when a sign-in cannot be completed.

Plain HTML with no script and no inline style, so the strict Content-Security-Policy holds.
"""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — Parley</title>
</head>
<body>
<main>
<h1>{title}</h1>
<p>{message}</p>
<p><a href="/bff/login">Sign in again</a> · <a href="/">Back to Parley</a></p>
</main>
</body>
</html>
"""


def sign_in_problem_page(message: str, *, status: int) -> HTMLResponse:
    """A page telling the person their sign-in did not work, and how to try again."""
    title = "Sign-in did not work" if status < 500 else "Sign-in is unavailable"
    return HTMLResponse(
        _PAGE.format(title=escape(title), message=escape(message)), status_code=status
    )
