"""Full-text search over the messages of the conversations a caller belongs to.

Every live message has one row in ``messages.search_entries`` (migration 0002), written in the
transaction that sends, edits or deletes it. The row holds the body *folded* (NFKC-normalised and
case-folded here, so matching does not depend on the database's locale, and "ＣAFÉ" typed one
way finds "café" written another) and its ``to_tsvector('simple', …)``. A message matches a query
in either of two ways:

- word match: ``document @@ websearch_to_tsquery('simple', query)``. Search-engine syntax
  (``"a phrase"``, ``or``, ``-word``) works and no input is a syntax error. Ranked by
  ``ts_rank`` normalised by document length.
- substring match: ``folded_body LIKE '%query%'`` (pg_trgm's GIN index). This finds text in
  languages written without spaces (a Japanese sentence is one "word" to the parser), parts of
  words and emoji. Substring-only matches rank after every word match.

Hits are joined to ``messages.messages`` for the sender and the current body, so a tombstone is
never returned even if its entry lingered.

Results are ordered by (rank_key DESC, created_at DESC, message_id DESC), where ``rank_key`` is
the rank quantised to an integer (0 for substring-only matches). Integers compare exactly, and
``message_id`` is unique, so the order is total and the keyset cursor of the last item of a page
starts the next page with no duplicate and no gap (as long as the matching messages do not change
in between).

Snippets are built here, not by ``ts_headline``: a list of ``{"text", "match"}`` segments, never
markup, so a client renders highlights without injecting anything.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from servicekit.cursors import decode_cursor, encode_cursor
from servicekit.errors import ValidationFailed
from servicekit.requests import parse_uuid, query_integer, query_text
from servicekit.timestamps import utc_timestamp

MAX_QUERY_LENGTH: Final = 200  # characters, after surrounding whitespace is stripped
MAX_RAW_QUERY_LENGTH: Final = 1_000  # characters before stripping: bounds the work of checking
DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 50
RANK_SCALE: Final = 1_000_000  # ts_rank (0..1) is kept to 6 decimals, as an exact integer
# ts_rank normalisation 1|32: divide by 1 + log(length), then map to rank / (rank + 1) in 0..1.
RANK_NORMALISATION: Final = 33
SNIPPET_MAX_CHARACTERS: Final = 200  # code points of a body shown around its first match
SNIPPET_LEAD_CHARACTERS: Final = 40  # code points kept before the first match
ELLIPSIS: Final = "…"

_CURSOR_KEYS: Final = {"rank": int, "created_at": str, "message_id": str}

_SEARCH = """
SELECT hit.conversation_id, hit.seq, hit.message_id, hit.created_at, hit.rank_key,
       message.sender_id, message.body
FROM (
    SELECT entry.conversation_id, entry.seq, entry.message_id, entry.created_at,
           CASE WHEN entry.document @@ websearch_to_tsquery('simple', :query)
                THEN greatest(1, round(
                    ts_rank(entry.document, websearch_to_tsquery('simple', :query), {normalisation})
                    * {scale}))::bigint
                ELSE 0
           END AS rank_key
    FROM messages.search_entries AS entry
    WHERE entry.conversation_id = ANY(:conversation_ids)
      AND (entry.document @@ websearch_to_tsquery('simple', :query)
           OR entry.folded_body LIKE :pattern ESCAPE '\\')
) AS hit
JOIN messages.messages AS message
  ON message.conversation_id = hit.conversation_id AND message.seq = hit.seq
WHERE message.deleted_at IS NULL {after}
ORDER BY hit.rank_key DESC, hit.created_at DESC, hit.message_id DESC
LIMIT :limit
"""
_AFTER = (
    "AND (hit.rank_key, hit.created_at, hit.message_id)"
    " < (:after_rank, :after_created_at, :after_message_id)"
)


def fold(value: str) -> str:
    """``value`` as search compares it: the same on every database and in every locale."""
    return unicodedata.normalize("NFKC", value).casefold()


def like_pattern(query: str) -> str:
    """A LIKE pattern (escape character backslash) matching text that contains ``query``."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# Writes -----------------------------------------------------------------------------------------


async def index_message(
    connection: AsyncConnection,
    *,
    conversation_id: uuid.UUID,
    seq: int,
    message_id: uuid.UUID,
    body: str,
    created_at: datetime,
) -> None:
    """Make a new message searchable; running it again (a retried transaction) changes nothing."""
    await connection.execute(
        text(
            """
            INSERT INTO messages.search_entries
                (conversation_id, seq, message_id, created_at, folded_body, document)
            VALUES (:conversation_id, :seq, :message_id, :created_at, :folded_body,
                    to_tsvector('simple', :folded_body))
            ON CONFLICT (conversation_id, seq) DO UPDATE
            SET message_id = EXCLUDED.message_id, created_at = EXCLUDED.created_at,
                folded_body = EXCLUDED.folded_body, document = EXCLUDED.document
            """
        ),
        {
            "conversation_id": conversation_id,
            "seq": seq,
            "message_id": message_id,
            "created_at": created_at,
            "folded_body": fold(body),
        },
    )


async def reindex_message(
    connection: AsyncConnection, *, conversation_id: uuid.UUID, seq: int, body: str
) -> None:
    """Make an edited message searchable by its new text only."""
    await connection.execute(
        text(
            """
            UPDATE messages.search_entries
            SET folded_body = :folded_body, document = to_tsvector('simple', :folded_body)
            WHERE conversation_id = :conversation_id AND seq = :seq
            """
        ),
        {"conversation_id": conversation_id, "seq": seq, "folded_body": fold(body)},
    )


async def unindex_messages(
    connection: AsyncConnection, *, conversation_id: uuid.UUID, seqs: Sequence[int]
) -> None:
    """Remove deleted or expired messages from search."""
    if not seqs:
        return
    await connection.execute(
        text(
            "DELETE FROM messages.search_entries"
            " WHERE conversation_id = :conversation_id AND seq = ANY(:seqs)"
        ),
        {"conversation_id": conversation_id, "seqs": list(seqs)},
    )


# Reads ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchPosition:
    """Where a page of results ends: the sort key of its last hit."""

    rank_key: int
    created_at: datetime
    message_id: uuid.UUID

    def to_cursor(self) -> str:
        return encode_cursor(
            {
                "rank": self.rank_key,
                "created_at": self.created_at.isoformat(),
                "message_id": str(self.message_id),
            }
        )

    @classmethod
    def from_cursor(cls, cursor: str) -> SearchPosition:
        """The position in a ``next_cursor``; 422 ``invalid_cursor`` for anything else."""
        position = decode_cursor(cursor, keys=_CURSOR_KEYS)
        message_id = parse_uuid(position["message_id"])
        try:
            created_at = datetime.fromisoformat(position["created_at"])
        except ValueError:
            created_at = None
        if message_id is None or created_at is None or created_at.tzinfo is None:
            raise ValidationFailed(
                "The cursor is not valid.",
                errors=[{"field": "cursor", "message": "Use a next_cursor from a previous page."}],
                code="invalid_cursor",
            )
        return cls(position["rank"], created_at, message_id)


@dataclass(frozen=True)
class SearchHit:
    """One message that matches a query."""

    conversation_id: uuid.UUID
    seq: int
    message_id: uuid.UUID
    sender_id: str
    created_at: datetime
    body: str
    rank_key: int

    @property
    def rank(self) -> float:
        """Relevance from 0 to 1; 0 for a substring-only match."""
        return self.rank_key / RANK_SCALE

    @property
    def position(self) -> SearchPosition:
        return SearchPosition(self.rank_key, self.created_at, self.message_id)


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit]
    next_position: SearchPosition | None


async def search_entries(
    connection: AsyncConnection,
    conversation_ids: Sequence[uuid.UUID],
    query: str,
    *,
    limit: int,
    after: SearchPosition | None = None,
) -> SearchPage:
    """The live messages of ``conversation_ids`` that match ``query``, best first, after ``after``.

    Only ``conversation_ids`` are searched: the caller passes the conversations the asking
    principal belongs to.
    """
    if not conversation_ids:
        return SearchPage([], None)
    folded = fold(query)
    parameters: dict[str, Any] = {
        "conversation_ids": list(conversation_ids),
        "query": folded,
        "pattern": like_pattern(folded),
        "limit": limit + 1,  # one more than asked tells whether another page follows
    }
    if after is not None:
        parameters |= {
            "after_rank": after.rank_key,
            "after_created_at": after.created_at,
            "after_message_id": after.message_id,
        }
    statement = text(
        _SEARCH.format(
            normalisation=RANK_NORMALISATION,
            scale=RANK_SCALE,
            after=_AFTER if after is not None else "",
        )
    )
    rows = (await connection.execute(statement, parameters)).all()
    hits = [
        SearchHit(
            conversation_id=row.conversation_id,
            seq=row.seq,
            message_id=row.message_id,
            sender_id=row.sender_id,
            created_at=row.created_at,
            body=row.body,
            rank_key=row.rank_key,
        )
        for row in rows[:limit]
    ]
    return SearchPage(hits, hits[-1].position if len(rows) > limit else None)


# Snippets ---------------------------------------------------------------------------------------


def _highlight_pattern(query: str) -> re.Pattern[str] | None:
    """What a snippet marks: the whole query anywhere, and the query's words as whole words.

    These are the two ways a message matches. Negated words (``-word``) and the ``or`` operator
    are left out: they are not what the message was found by.
    """
    words = {
        word
        for token in query.split()
        if not token.startswith("-") and token.casefold() != "or"
        for word in re.findall(r"\w+", token)
    }
    alternatives = []
    if query:
        alternatives.append(re.escape(query))
    if words:
        ordered = sorted(words, key=len, reverse=True)  # the longest of overlapping words wins
        alternatives.append(r"(?<!\w)(?:" + "|".join(map(re.escape, ordered)) + r")(?!\w)")
    return re.compile("|".join(alternatives), re.IGNORECASE) if alternatives else None


def _matched_spans(body: str, query: str) -> list[tuple[int, int]]:
    pattern = _highlight_pattern(query.strip())
    spans: list[tuple[int, int]] = []
    if pattern is None:
        return spans
    for match in pattern.finditer(body):
        start, end = match.span()
        if start == end:
            continue
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
        else:
            spans.append((start, end))
    return spans


def snippet_segments(body: str, query: str) -> list[dict[str, Any]]:
    """Up to ``SNIPPET_MAX_CHARACTERS`` of ``body`` around its first match, as text segments.

    Each segment is ``{"text": …, "match": bool}``; an ellipsis stands for text left out.
    """
    spans = _matched_spans(body, query)
    start = max(0, spans[0][0] - SNIPPET_LEAD_CHARACTERS) if spans else 0
    end = min(len(body), start + SNIPPET_MAX_CHARACTERS)
    start = max(0, end - SNIPPET_MAX_CHARACTERS)
    segments: list[dict[str, Any]] = []

    def add(segment_text: str, match: bool) -> None:
        if not segment_text:
            return
        if segments and segments[-1]["match"] == match:
            segments[-1]["text"] += segment_text
        else:
            segments.append({"text": segment_text, "match": match})

    if start > 0:
        add(ELLIPSIS, False)
    cursor = start
    for span_start, span_end in spans:
        span_start, span_end = max(span_start, start), min(span_end, end)
        if span_start >= span_end:
            continue
        add(body[cursor:span_start], False)
        add(body[span_start:span_end], True)
        cursor = span_end
    add(body[cursor:end], False)
    if end < len(body):
        add(ELLIPSIS, False)
    return segments


# HTTP -------------------------------------------------------------------------------------------


def _search_text(request: Request) -> str:
    """The ``q`` parameter: 1 to ``MAX_QUERY_LENGTH`` characters of single-line text."""
    raw = query_text(request, "q", max_length=MAX_RAW_QUERY_LENGTH)
    query = (raw or "").strip()
    if not 1 <= len(query) <= MAX_QUERY_LENGTH:
        problem = "Required." if raw is None else f"Must be 1 to {MAX_QUERY_LENGTH} characters."
        raise ValidationFailed("'q' is not valid.", errors=[{"field": "q", "message": problem}])
    return query


def _conversation_filter(request: Request) -> uuid.UUID | None:
    raw = request.query_params.get("conversation_id")
    if raw is None:
        return None
    conversation_id = parse_uuid(raw)
    if conversation_id is None:
        raise ValidationFailed(
            "'conversation_id' is not valid.",
            errors=[{"field": "conversation_id", "message": "Must be a UUID."}],
        )
    return conversation_id


def _item(hit: SearchHit, query: str) -> dict[str, Any]:
    return {
        "message_id": str(hit.message_id),
        "conversation_id": str(hit.conversation_id),
        "seq": hit.seq,
        "sender": hit.sender_id,
        "created_at": utc_timestamp(hit.created_at),
        "snippet": snippet_segments(hit.body, query),
        "rank": hit.rank,
    }


async def search_messages(request: Request) -> Response:
    """``GET /api/search?q=&limit=&cursor=&conversation_id=``: the caller's messages matching q.

    Only conversations the caller belongs to are searched; a ``conversation_id`` filter naming
    any other gives an empty result, the same whether that conversation exists or not.
    """
    principal = await request.app.state.authentication.principal(request)
    principal.require_scope("chat.read")
    query = _search_text(request)
    limit = query_integer(request, "limit", default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
    assert limit is not None  # a default is given
    cursor = request.query_params.get("cursor")
    after = SearchPosition.from_cursor(cursor) if cursor is not None else None
    only = _conversation_filter(request)
    conversation_ids: list[uuid.UUID] = await request.app.state.membership.conversation_ids_of(
        principal.id
    )
    if only is not None:
        conversation_ids = [only] if only in conversation_ids else []
    page = SearchPage([], None)
    if conversation_ids:
        async with request.app.state.database.engine.connect() as connection:
            page = await search_entries(
                connection, conversation_ids, query, limit=limit, after=after
            )
    return JSONResponse(
        {
            "items": [_item(hit, query) for hit in page.hits],
            "next_cursor": page.next_position.to_cursor() if page.next_position else None,
        }
    )
