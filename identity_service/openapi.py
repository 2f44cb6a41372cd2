"""The OpenAPI 3.1 document of identity_service's API (the people directory), served at
``/api/identity_service/openapi.json``. Its OpenID endpoints are described by discovery."""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from identity_service.routes import (
    DIRECTORY_DEFAULT_LIMIT,
    DIRECTORY_MAX_LIMIT,
    DIRECTORY_MAX_QUERY_LENGTH,
)

_PROBLEM: Final = {"$ref": "#/components/responses/Problem"}
_SECURED: Final[list[dict[str, list[str]]]] = [{"bearer": []}]

DOCUMENT: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {"title": "Parley identity_service", "version": "1"},
    "paths": {
        "/api/users": {
            "get": {
                "operationId": "searchUsers",
                "summary": "People whose name or email address contains q, by name",
                "security": _SECURED,
                "parameters": [
                    {
                        "name": "q",
                        "in": "query",
                        "schema": {"type": "string", "maxLength": DIRECTORY_MAX_QUERY_LENGTH},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": DIRECTORY_MAX_LIMIT,
                            "default": DIRECTORY_DEFAULT_LIMIT,
                        },
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "One page of people",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/UserPage"}
                            }
                        },
                    },
                    "401": _PROBLEM,
                    "403": _PROBLEM,
                    "422": _PROBLEM,
                },
            }
        },
        "/api/users/{user_id}": {
            "get": {
                "operationId": "getUser",
                "summary": "One person",
                "security": _SECURED,
                "parameters": [
                    {
                        "name": "user_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The person",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/User"}}
                        },
                    },
                    "401": _PROBLEM,
                    "403": _PROBLEM,
                    "404": _PROBLEM,
                },
            }
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "schemas": {
            "User": {
                "type": "object",
                "required": ["id", "display_name", "email"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "display_name": {"type": "string"},
                    "email": {"type": ["string", "null"], "format": "email"},
                },
            },
            "UserPage": {
                "type": "object",
                "required": ["items", "next_cursor"],
                "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/User"}},
                    "next_cursor": {"type": ["string", "null"]},
                },
            },
        },
        "responses": {
            "Problem": {
                "description": "An RFC 9457 problem",
                "content": {"application/problem+json": {"schema": {"type": "object"}}},
            }
        },
    },
}


async def openapi_document(request: Request) -> Response:
    return JSONResponse(DOCUMENT)
