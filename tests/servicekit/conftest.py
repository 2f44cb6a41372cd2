"""Fixtures for the token tests: a real local OpenID issuer, an HTTP client and a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.issuer import IssuerHost, ManualClock, running_issuer_host


@pytest.fixture(scope="module")
async def issuer_host() -> AsyncIterator[IssuerHost]:
    async with running_issuer_host() as host:
        yield host


@pytest.fixture(scope="module")
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
