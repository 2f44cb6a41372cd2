"""The OpenAPI document describes exactly the public routes the service serves."""

from __future__ import annotations

import re

from starlette.routing import Route

from messages_service.routes import ROUTES
from tests.messages_service.conftest import Chat

DOCUMENT_PATH = "/api/messages_service/openapi.json"


async def test_the_document_describes_every_public_route(chat: Chat) -> None:
    response = await chat.http.get(chat.messages_url + DOCUMENT_PATH)

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.1.0"
    described = {
        (path, method.upper())
        for path, operations in document["paths"].items()
        for method in operations
    }
    served = {
        (route.path, method)
        for route in ROUTES
        if isinstance(route, Route) and route.path != DOCUMENT_PATH
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert described == served


async def test_every_reference_in_the_document_resolves(chat: Chat) -> None:
    document = (await chat.http.get(chat.messages_url + DOCUMENT_PATH)).json()
    text = str(document)
    for kind, name in re.findall(r"#/components/(\w+)/(\w+)", text):
        assert name in document["components"][kind], name
    for operations in document["paths"].values():
        for operation in operations.values():
            assert operation["security"] == [{"bearer": []}]
            assert any(status.startswith("2") for status in operation["responses"])
