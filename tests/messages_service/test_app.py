"""How the app answers a transaction that lost every retry: 503 to retry, never a bare 500."""

from __future__ import annotations

import json

from sqlalchemy.exc import DBAPIError
from starlette.requests import Request

from messages_service.app import answer_lasting_conflict


class DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def request() -> Request:
    return Request({"type": "http", "method": "POST", "path": "/api/x", "headers": []})


async def test_a_lasting_serialization_failure_is_a_503_with_retry_after() -> None:
    error = DBAPIError("UPDATE …", {}, DriverError("40001"))
    response = await answer_lasting_conflict(request(), error)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert json.loads(bytes(response.body))["code"] == "contention"


async def test_other_database_errors_stay_opaque_500s() -> None:
    error = DBAPIError("SELECT …", {}, DriverError("42P01"))
    response = await answer_lasting_conflict(request(), error)
    assert response.status_code == 500
    assert "42P01" not in bytes(response.body).decode()
