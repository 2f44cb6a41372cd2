"""The people directory: GET /api/users?q= and GET /api/users/{id}, behind access tokens."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from identity_service.admin import disable_user
from tests.identity_service.support import (
    IdentityFactory,
    IdentityServer,
    client_credentials,
    unique,
)


@pytest.fixture
async def api(
    identity: IdentityServer, factory: IdentityFactory, http: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    """An API client authenticated as a bot allowed to read chats."""
    bot = await factory.machine_client(scopes=("chat.read",))
    token = (await client_credentials(http, identity, bot)).json()["access_token"]
    async with httpx.AsyncClient(
        base_url=identity.url, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        yield client


async def test_the_directory_needs_a_valid_access_token(
    identity: IdentityServer, factory: IdentityFactory, http: httpx.AsyncClient
) -> None:
    writer = await factory.machine_client(scopes=("chat.write",))
    writer_token = (await client_credentials(http, identity, writer)).json()["access_token"]

    anonymous = await http.get(f"{identity.url}/api/users")
    forged = await http.get(
        f"{identity.url}/api/users", headers={"Authorization": "Bearer not.a.token"}
    )
    out_of_scope = await http.get(
        f"{identity.url}/api/users", headers={"Authorization": f"Bearer {writer_token}"}
    )

    for response, status in ((anonymous, 401), (forged, 401), (out_of_scope, 403)):
        assert response.status_code == status
        assert response.headers["content-type"] == "application/problem+json"


async def test_search_finds_people_by_part_of_their_name_or_email(
    factory: IdentityFactory, api: httpx.AsyncClient
) -> None:
    tag = uuid.uuid4().hex[:8]
    ada = await factory.account(name=f"Ada {tag} Lovelace", email=f"ada.{tag}@example.com")
    await factory.account(name=f"Charles {tag} Babbage", email=f"cb.{tag}@example.com")
    grace = await factory.account(name=f"grace {tag} hopper")  # email without the tag

    by_name = (await api.get("/api/users", params={"q": f"ada {tag}"})).json()
    by_email = (await api.get("/api/users", params={"q": f"ada.{tag}@"})).json()
    by_tag = (await api.get("/api/users", params={"q": tag})).json()

    assert [person["id"] for person in by_name["items"]] == [ada.id]
    assert by_name["items"][0] == {
        "id": ada.id,
        "display_name": f"Ada {tag} Lovelace",
        "email": f"ada.{tag}@example.com",
    }
    assert [person["id"] for person in by_email["items"]] == [ada.id]
    names = [person["display_name"] for person in by_tag["items"]]
    assert names == sorted(names, key=str.lower)
    assert grace.id in {person["id"] for person in by_tag["items"]}
    assert all(set(person) == {"id", "display_name", "email"} for person in by_tag["items"])


async def test_disabled_people_are_not_listed_or_found(
    factory: IdentityFactory, api: httpx.AsyncClient, database_url: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    gone = await factory.account(name=f"Gone {tag}")
    await disable_user(database_url, gone.id)

    listed = (await api.get("/api/users", params={"q": tag})).json()
    fetched = await api.get(f"/api/users/{gone.id}")

    assert listed["items"] == []
    assert fetched.status_code == 404


async def test_pages_follow_the_cursor_without_gaps_or_repeats(
    factory: IdentityFactory, api: httpx.AsyncClient
) -> None:
    tag = uuid.uuid4().hex[:8]
    made = {(await factory.account(name=f"Page {tag} {index:02d}")).id for index in range(5)}

    seen: list[str] = []
    cursor = None
    while True:
        params = {"q": tag, "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/api/users", params=params)).json()
        seen += [person["id"] for person in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert len(seen) == len(made) == len(set(seen))
    assert set(seen) == made


@pytest.mark.parametrize(
    "params",
    [{"limit": "51"}, {"limit": "0"}, {"limit": "ten"}, {"cursor": "!!"}, {"q": "x" * 101}],
)
async def test_invalid_queries_are_422_problems(
    api: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await api.get("/api/users", params=params)

    assert response.status_code == 422
    assert response.json()["code"] == "validation_failed"


async def test_one_person_by_id_and_404_for_anything_else(
    factory: IdentityFactory, api: httpx.AsyncClient
) -> None:
    person = await factory.account(name=unique("Fetched"))

    found = await api.get(f"/api/users/{person.id}")
    unknown = await api.get(f"/api/users/{uuid.uuid4()}")
    malformed = await api.get("/api/users/not-a-uuid")

    assert found.json()["display_name"] == person.account.display_name
    for response in (unknown, malformed):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "user_not_found"


async def test_the_api_is_described_by_an_openapi_document(
    identity: IdentityServer, http: httpx.AsyncClient
) -> None:
    document = (await http.get(f"{identity.url}/api/identity_service/openapi.json")).json()

    assert document["openapi"] == "3.1.0"
    assert set(document["paths"]) == {"/api/users", "/api/users/{user_id}"}
