"""Message search against real PostgreSQL in both database modes: what is found, in what order,
where, in which languages, and that no query text can break it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.routing import Route

from messages_service.search import (
    SNIPPET_MAX_CHARACTERS,
    SearchPage,
    SearchPosition,
    index_message,
    reindex_message,
    search_entries,
    search_messages,
    snippet_segments,
    unindex_messages,
)
from messages_service.tables import messages
from servicekit.app import create_service_app
from servicekit.authentication import BearerAuthentication
from servicekit.cursors import encode_cursor
from servicekit.db import Database
from servicekit.errors import UpstreamUnavailable, ValidationFailed
from servicekit.settings import DEVELOPMENT, ServiceSettings
from tests.messages_service.conftest import Caller, Chat
from tests.support.issuer import LocalIssuer, running_issuer
from tests.support.servers import serve_in_loop

START = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    try:
        yield database
    finally:
        await database.close()


class Conversation:
    """A conversation of its own per test, so tests never see each other's messages."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.id = uuid.uuid4()
        self.last_seq = 0

    async def send(self, body: str, *, sender: str = "alice") -> tuple[int, uuid.UUID]:
        """Store and index a message as sending does, in one transaction; its seq and id."""
        self.last_seq += 1
        seq, message_id = self.last_seq, uuid.uuid4()
        created_at = START + timedelta(seconds=seq)

        async def work(connection: AsyncConnection) -> None:
            await connection.execute(
                insert(messages).values(
                    conversation_id=self.id,
                    seq=seq,
                    id=message_id,
                    sender_id=sender,
                    client_msg_id=str(message_id),
                    body=body,
                    created_at=created_at,
                )
            )
            await index_message(
                connection,
                conversation_id=self.id,
                seq=seq,
                message_id=message_id,
                body=body,
                created_at=created_at,
            )

        await self.database.transaction(work)
        return seq, message_id

    async def edit(self, seq: int, body: str) -> None:
        async def work(connection: AsyncConnection) -> None:
            await connection.execute(
                update(messages)
                .where(messages.c.conversation_id == self.id, messages.c.seq == seq)
                .values(body=body, edited_at=datetime.now(UTC))
            )
            await reindex_message(connection, conversation_id=self.id, seq=seq, body=body)

        await self.database.transaction(work)

    async def unindex(self, seqs: Sequence[int]) -> None:
        async def work(connection: AsyncConnection) -> None:
            await unindex_messages(connection, conversation_id=self.id, seqs=seqs)

        await self.database.transaction(work)


async def search(
    database: Database,
    conversations: Sequence[Conversation],
    query: str,
    *,
    limit: int = 20,
    after: SearchPosition | None = None,
) -> SearchPage:
    async with database.engine.connect() as connection:
        return await search_entries(
            connection, [c.id for c in conversations], query, limit=limit, after=after
        )


async def found_seqs(database: Database, conversation: Conversation, query: str) -> list[int]:
    page = await search(database, [conversation], query)
    return [hit.seq for hit in page.hits]


def marked(segments: list[dict[str, object]]) -> list[object]:
    return [segment["text"] for segment in segments if segment["match"]]


async def test_finds_messages_by_word_in_any_case(database: Database) -> None:
    conversation = Conversation(database)
    deploy, _ = await conversation.send("We Deploy on Friday")
    await conversation.send("lunch at noon?")

    assert await found_seqs(database, conversation, "deploy") == [deploy]
    assert await found_seqs(database, conversation, "DEPLOY friday") == [deploy]
    assert await found_seqs(database, conversation, "deploy tuesday") == []


async def test_better_matches_rank_first(database: Database) -> None:
    conversation = Conversation(database)
    passing, _ = await conversation.send(
        "the budget came up once in a long discussion about hiring, travel and the offsite plans"
    )
    focused, _ = await conversation.send("budget budget: the budget is due")
    partial_word, _ = await conversation.send("see the budgeting spreadsheet")

    page = await search(database, [conversation], "budget")

    assert [hit.seq for hit in page.hits] == [focused, passing, partial_word]
    ranks = [hit.rank for hit in page.hits]
    assert ranks[0] > ranks[1] > ranks[2] == 0.0


async def test_search_is_confined_to_the_given_conversations(database: Database) -> None:
    mine, theirs = Conversation(database), Conversation(database)
    await mine.send("quarterly numbers look fine")
    await theirs.send("quarterly numbers are secret")
    await theirs.send("secret")

    page = await search(database, [mine], "secret")
    assert page.hits == []
    page = await search(database, [mine], "quarterly")
    assert {hit.conversation_id for hit in page.hits} == {mine.id}
    assert (await search(database, [], "secret")).hits == []


@pytest.mark.parametrize(
    ("body", "query"),
    [
        ("東京で会議があります", "会議"),  # Japanese: no spaces between words
        ("我们明天开会讨论预算", "预算"),  # Chinese
        ("สวัสดีครับทุกคน ประชุมพรุ่งนี้", "ทุกคน"),  # Thai: spaces only between phrases
        ("שלום עולם, הפגישה מחר", "הפגישה"),  # Hebrew, right to left
        ("مرحبا بالعالم", "بالعالم"),  # Arabic, right to left
        ("party time 🎉🎉", "🎉"),  # emoji
        ("🎉🥳🎊", "🥳"),  # emoji only
        ("Straße und Übung", "STRASSE"),  # case folding beyond ASCII
        ("Café crème", "cafe\u0301"),  # the same letter composed in the body, decomposed in q
        ("ＡＢＣ株式会社", "abc"),  # full-width Latin letters
    ],
)
async def test_finds_text_of_any_script(database: Database, body: str, query: str) -> None:
    conversation = Conversation(database)
    await conversation.send("an unrelated message")
    seq, _ = await conversation.send(body)

    page = await search(database, [conversation], query)

    assert [hit.seq for hit in page.hits] == [seq]
    assert page.hits[0].body == body


async def test_snippets_mark_what_matched(database: Database) -> None:
    conversation = Conversation(database)
    await conversation.send("Deploy <b>tonight</b>, then deploy again")
    await conversation.send("東京で会議があります")

    (hit,) = (await search(database, [conversation], "deploy")).hits
    segments = snippet_segments(hit.body, "deploy")
    assert marked(segments) == ["Deploy", "deploy"]
    assert "".join(str(segment["text"]) for segment in segments) == hit.body  # markup is text

    (hit,) = (await search(database, [conversation], "会議")).hits
    assert snippet_segments(hit.body, "会議") == [
        {"text": "東京で", "match": False},
        {"text": "会議", "match": True},
        {"text": "があります", "match": False},
    ]


def test_snippet_of_a_long_message_is_a_window_around_the_first_match() -> None:
    body = "lorem ipsum " * 40 + "the needle is here " + "dolor sit amet " * 40

    segments = snippet_segments(body, "needle")

    assert marked(segments) == ["needle"]
    assert str(segments[0]["text"]).startswith("…")
    assert str(segments[-1]["text"]).endswith("…")
    shown = "".join(str(segment["text"]) for segment in segments)
    assert len(shown) == SNIPPET_MAX_CHARACTERS + 2  # two ellipses


def test_snippet_does_not_mark_negated_words_or_operators() -> None:
    segments = snippet_segments("coffee or tea, no milk", "coffee or tea -milk")
    assert marked(segments) == ["coffee", "tea"]


async def test_edit_replaces_the_searchable_text(database: Database) -> None:
    conversation = Conversation(database)
    seq, _ = await conversation.send("meet at the station")

    await conversation.edit(seq, "meet at the airport")

    assert await found_seqs(database, conversation, "station") == []
    assert await found_seqs(database, conversation, "airport") == [seq]


async def test_unindexed_messages_are_not_found(database: Database) -> None:
    conversation = Conversation(database)
    first, _ = await conversation.send("invoice one")
    second, _ = await conversation.send("invoice two")
    third, _ = await conversation.send("invoice three")

    await conversation.unindex([first, third])
    await conversation.unindex([first])  # deleting again changes nothing
    await conversation.unindex([])

    assert await found_seqs(database, conversation, "invoice") == [second]


async def test_indexing_again_keeps_one_entry(database: Database) -> None:
    conversation = Conversation(database)
    seq, message_id = await conversation.send("retried send")

    async def index_again(connection: AsyncConnection) -> None:
        await index_message(
            connection,
            conversation_id=conversation.id,
            seq=seq,
            message_id=message_id,
            body="retried send",
            created_at=START + timedelta(seconds=seq),
        )

    await database.transaction(index_again)

    assert await found_seqs(database, conversation, "retried") == [seq]


async def test_tombstones_are_never_found_even_when_still_indexed(database: Database) -> None:
    conversation = Conversation(database)
    seq, _ = await conversation.send("delete me")

    async def delete_without_unindexing(connection: AsyncConnection) -> None:
        await connection.execute(
            update(messages)
            .where(messages.c.conversation_id == conversation.id, messages.c.seq == seq)
            .values(body=None, deleted_at=datetime.now(UTC))
        )

    await database.transaction(delete_without_unindexing)

    assert await found_seqs(database, conversation, "delete") == []


async def test_pages_return_every_match_exactly_once_in_rank_order(database: Database) -> None:
    first, second = Conversation(database), Conversation(database)
    expected = set()
    for number in range(13):
        # Repeats give several distinct ranks, each shared by several messages; the substring
        # matches ("reporting") all share rank 0.
        body = " ".join(["report"] * (number % 3 + 1)) + f" number {number}"
        for conversation in (first, second):
            seq, _ = await conversation.send(body if number % 4 else f"reporting {number}")
            expected.add((conversation.id, seq))
    await first.send("unrelated")

    seen: list[tuple[uuid.UUID, int]] = []
    ranks: list[float] = []
    after = None
    for _ in range(20):
        page = await search(database, [first, second], "report", limit=4, after=after)
        seen += [(hit.conversation_id, hit.seq) for hit in page.hits]
        ranks += [hit.rank for hit in page.hits]
        after = page.next_position
        if after is None:
            break
        after = SearchPosition.from_cursor(after.to_cursor())  # as a client sends it back

    assert len(seen) == len(expected) == 26
    assert set(seen) == expected
    assert ranks == sorted(ranks, reverse=True)


@pytest.mark.parametrize(
    "query",
    [
        "%",
        "_",
        "100%",
        "'",
        '"',
        '"unterminated',
        "\\",
        "\\\\'",
        "a & b | !c",
        "!",
        "&|!:*()",
        "foo:*",
        "foo:A",
        "<->",
        "-",
        "-only negated",
        "or",
        "( ) [ ] { }",
        "'; DROP TABLE messages.messages; --",
        "\u200b\u200f",  # zero width space, right-to-left mark
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",  # astral plane letters
    ],
)
async def test_hostile_queries_never_fail(database: Database, query: str) -> None:
    conversation = Conversation(database)
    await conversation.send("an ordinary message")

    page = await search(database, [conversation], query)

    assert all(hit.conversation_id == conversation.id for hit in page.hits)
    for hit in page.hits:
        snippet_segments(hit.body, query)


async def test_like_wildcards_in_queries_match_literally(database: Database) -> None:
    conversation = Conversation(database)
    percent, _ = await conversation.send("we are 100% done")
    underscore, _ = await conversation.send("see file_name.txt")
    await conversation.send("see filexname.txt and 1000 done")

    assert await found_seqs(database, conversation, "100%") == [percent]
    assert await found_seqs(database, conversation, "file_name") == [underscore]
    assert await found_seqs(database, conversation, "%") == [percent]


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not-a-cursor",
        SearchPosition(1, START, uuid.uuid4()).to_cursor()[:-3],
        encode_cursor({"rank": 1, "created_at": "yesterday", "message_id": str(uuid.uuid4())}),
        encode_cursor({"rank": 1, "created_at": "2025-01-01T00:00:00", "message_id": "x"}),
        encode_cursor({"rank": "1", "created_at": START.isoformat(), "message_id": "x"}),
    ],
)
def test_forged_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(ValidationFailed):
        SearchPosition.from_cursor(cursor)


# GET /api/search over real HTTP: real token checks and database; conversations_service's
# answer ("which conversations is this principal in") is a stand-in, so each case is exact.


class StandInMembership:
    """What conversations_service would answer; ``unavailable`` makes it answer 503."""

    def __init__(self) -> None:
        self.conversations: dict[str, list[uuid.UUID]] = {}
        self.unavailable = False
        self.calls = 0

    async def conversation_ids_of(self, principal_id: str) -> list[uuid.UUID]:
        self.calls += 1
        if self.unavailable:
            raise UpstreamUnavailable("conversations_service is unavailable.")
        return list(self.conversations.get(principal_id, []))


@dataclass
class SearchService:
    client: httpx.AsyncClient
    issuer: LocalIssuer
    membership: StandInMembership

    async def search(self, token: str, **parameters: str) -> httpx.Response:
        return await self.client.get(
            "/api/search", params=parameters, headers={"Authorization": f"Bearer {token}"}
        )


@pytest.fixture(scope="module")
async def search_service(database: Database, redis_url: str) -> AsyncIterator[SearchService]:
    async with running_issuer() as issuer:
        settings = ServiceSettings(
            service_name="messages_service",
            environment=DEVELOPMENT,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            log_format="json",
            redis_url=redis_url,  # not used by search
            redis_namespace="unused",
            oidc_issuer=issuer.url,
            api_audience=issuer.audience,
        )
        authentication = BearerAuthentication(settings)
        membership = StandInMembership()
        app = create_service_app(
            settings,
            routes=[Route("/api/search", search_messages, methods=["GET"])],
            resources={"authentication": authentication},
        )
        app.state.membership = membership
        app.state.database = database
        async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url) as client:
            yield SearchService(client, issuer, membership)
        await authentication.close()


async def test_a_non_member_never_finds_another_conversations_messages(
    database: Database, search_service: SearchService
) -> None:
    mine, theirs = Conversation(database), Conversation(database)
    await mine.send("harmless words")
    await theirs.send("the launch code is 1234")
    alice = str(uuid.uuid4())
    search_service.membership.conversations[alice] = [mine.id]
    token = search_service.issuer.access_token(sub=alice)

    for parameters in (
        {"q": "launch code"},
        {"q": "launch", "conversation_id": str(theirs.id)},
        {"q": "launch", "conversation_id": str(uuid.uuid4())},  # no such conversation: the same
    ):
        response = await search_service.search(token, **parameters)
        assert response.status_code == 200
        assert response.json() == {"items": [], "next_cursor": None}


async def test_search_answers_items_with_snippets_and_a_cursor(
    database: Database, search_service: SearchService
) -> None:
    conversation = Conversation(database)
    first, first_id = await conversation.send("release <script>x</script> notes", sender="bob")
    second, _ = await conversation.send("release release release")
    bob = str(uuid.uuid4())
    search_service.membership.conversations[bob] = [uuid.uuid4(), conversation.id]
    token = search_service.issuer.access_token(sub=bob)

    response = await search_service.search(token, q="  Release ", limit="1")
    assert response.status_code == 200
    page = response.json()
    assert [item["seq"] for item in page["items"]] == [second]
    assert page["next_cursor"]

    response = await search_service.search(token, q="release", cursor=page["next_cursor"])
    assert response.status_code == 200
    (item,) = response.json()["items"]
    assert item == {
        "message_id": str(first_id),
        "conversation_id": str(conversation.id),
        "seq": first,
        "sender": "bob",
        "created_at": f"2025-01-01T00:00:{first:02d}.000000Z",
        "snippet": [
            {"text": "release", "match": True},
            {"text": " <script>x</script> notes", "match": False},
        ],
        "rank": item["rank"],
    }
    assert 0 < item["rank"] < 1
    assert response.json()["next_cursor"] is None

    response = await search_service.search(token, q="release", conversation_id=str(conversation.id))
    assert [item["seq"] for item in response.json()["items"]] == [second, first]


@pytest.mark.parametrize(
    "parameters",
    [
        {},
        {"q": ""},
        {"q": "   "},
        {"q": "x" * 201},
        {"q": "line\nbreak"},
        {"q": "nul\x00"},
        {"q": "ok", "limit": "0"},
        {"q": "ok", "limit": "51"},
        {"q": "ok", "limit": "ten"},
        {"q": "ok", "cursor": "garbage"},
        {"q": "ok", "conversation_id": "not-a-uuid"},
    ],
)
async def test_invalid_parameters_are_422_problems(
    search_service: SearchService, parameters: dict[str, str]
) -> None:
    token = search_service.issuer.access_token()
    calls_before = search_service.membership.calls

    response = await search_service.search(token, **parameters)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] in {"validation_failed", "invalid_cursor"}
    assert search_service.membership.calls == calls_before  # refused before asking upstream


async def test_the_longest_query_is_accepted(search_service: SearchService) -> None:
    token = search_service.issuer.access_token()
    response = await search_service.search(token, q=" " + "x" * 200 + " ")
    assert response.status_code == 200


async def test_search_needs_a_valid_access_token(search_service: SearchService) -> None:
    response = await search_service.client.get("/api/search", params={"q": "x"})
    assert response.status_code == 401
    forged = search_service.issuer.unsigned_token()
    assert (await search_service.search(forged, q="x")).status_code == 401


async def test_conversations_service_down_is_a_503(search_service: SearchService) -> None:
    token = search_service.issuer.access_token()
    search_service.membership.unavailable = True
    try:
        response = await search_service.search(token, q="anything")
    finally:
        search_service.membership.unavailable = False

    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["code"] == "upstream_unavailable"


# The whole path: messages sent, edited and deleted through messages_service, membership from the
# real conversations_service (fixtures in conftest.py).


async def searched_bodies(chat: Chat, caller: Caller, **parameters: str) -> list[str]:
    response = await chat.call(caller, "GET", "/api/search", params=parameters)
    assert response.status_code == 200, response.text
    return ["".join(s["text"] for s in item["snippet"]) for item in response.json()["items"]]


async def test_messages_are_searchable_by_members_only_through_their_whole_life(
    chat: Chat,
) -> None:
    alice, bob, carol = chat.person(), chat.person(), chat.person()
    ours = await chat.group(alice, bob)
    carols = await chat.group(carol)
    word = f"zebra{uuid.uuid4().hex[:8]}"  # no other test's message contains it
    sent = await chat.message(alice, ours, f"the {word} plan")
    await chat.message(carol, carols, f"the secret {word} plan")

    assert await searched_bodies(chat, bob, q=word) == [f"the {word} plan"]
    assert await searched_bodies(chat, carol, q=word) == [f"the secret {word} plan"]
    assert await searched_bodies(chat, alice, q=word, conversation_id=carols) == []

    edited = await chat.call(
        alice, "PATCH", f"/api/messages/{sent['id']}", json={"body": f"the {word} budget"}
    )
    assert edited.status_code == 200, edited.text
    assert await searched_bodies(chat, bob, q="plan", conversation_id=ours) == []
    assert await searched_bodies(chat, bob, q=word) == [f"the {word} budget"]

    await chat.remove_member(alice, ours, bob)
    assert await searched_bodies(chat, bob, q=word) == []  # a former member finds nothing

    deleted = await chat.call(alice, "DELETE", f"/api/messages/{sent['id']}")
    assert deleted.status_code == 204, deleted.text
    assert await searched_bodies(chat, alice, q=word) == []


async def test_bots_search_with_chat_read_only(chat: Chat) -> None:
    reader = await chat.bot("chat.read")
    writer_id = f"writer-{uuid.uuid4().hex[:8]}"
    writer = Caller(
        f"machine:{writer_id}", chat.issuer.machine_token(writer_id, scope="chat.write")
    )

    assert (await chat.call(reader, "GET", "/api/search", params={"q": "x"})).status_code == 200
    refused = await chat.call(writer, "GET", "/api/search", params={"q": "x"})
    assert refused.status_code == 403
    assert refused.json()["code"] == "insufficient_scope"
