"""Security headers added to every HTTP response of a service that browsers talk to."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class SecurityHeadersMiddleware:
    """Sets ``always`` on every response, ``unless_set`` where the route did not set its own,
    and ``Cache-Control: no-store`` under each of ``no_store_under`` (path prefixes)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        always: Mapping[str, str],
        unless_set: Mapping[str, str] | None = None,
        no_store_under: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self._always = dict(always)
        self._unless_set = dict(unless_set or {})
        self._no_store_under = no_store_under

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = scope["path"].startswith(self._no_store_under) if self._no_store_under else False

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self._unless_set.items():
                    headers.setdefault(name, value)
                headers.update(self._always)
                if no_store:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
