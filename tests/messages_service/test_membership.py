"""The membership cache: short-lived, trusted only while events can invalidate it, and never
filled by an answer that raced an invalidation. conversations_service is played by an
httpx MockTransport here, because these cases need answers timed to the microsecond."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest

from messages_service.membership import MEMBERS_CACHE_SECONDS, Membership
from servicekit.errors import BadGateway, NotFound
from servicekit.events import Event
from servicekit.http import UpstreamClient
from tests.support.issuer import ManualClock


class FixedToken:
    async def token(self) -> str:
        return "service-token"


class MembersEndpoint:
    """Answers the internal members endpoint from ``members``, counting calls."""

    def __init__(self) -> None:
        self.members: dict[str, list[str]] = {}
        self.calls = 0
        self.before_answer: Callable[[], None] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        assert request.headers["authorization"] == "Bearer service-token"
        conversation_id = request.url.path.split("/")[3]
        if self.before_answer is not None:
            self.before_answer()
        if conversation_id not in self.members:
            return httpx.Response(404, json={"code": "conversation_not_found"})
        return httpx.Response(
            200,
            json={
                "conversation_id": conversation_id,
                "kind": "group",
                "members": [
                    {"user_id": u, "role": "member"} for u in self.members[conversation_id]
                ],
            },
        )


@pytest.fixture
def endpoint() -> MembersEndpoint:
    return MembersEndpoint()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def membership(endpoint: MembersEndpoint, clock: ManualClock) -> Membership:
    client = UpstreamClient(
        "conversations_service", "http://conversations", transport=httpx.MockTransport(endpoint)
    )
    membership = Membership(client, FixedToken(), clock=clock)  # type: ignore[arg-type]
    membership.trust_cache_while(lambda: True)
    return membership


def member_event(event_type: str, conversation_id: uuid.UUID) -> Event:
    return Event(type=event_type, data={}, conversation_id=str(conversation_id))


async def test_members_are_cached_for_a_few_seconds(
    membership: Membership, endpoint: MembersEndpoint, clock: ManualClock
) -> None:
    conversation_id = uuid.uuid4()
    endpoint.members[str(conversation_id)] = ["alice"]

    await membership.require_member(conversation_id, "alice")
    await membership.require_member(conversation_id, "alice")
    assert endpoint.calls == 1
    clock.advance(MEMBERS_CACHE_SECONDS + 0.1)
    await membership.require_member(conversation_id, "alice")
    assert endpoint.calls == 2


@pytest.mark.parametrize(
    "event_type", ["member.added", "member.updated", "member.removed", "conversation.deleted"]
)
async def test_membership_events_invalidate_the_conversation(
    membership: Membership, endpoint: MembersEndpoint, event_type: str
) -> None:
    conversation_id, other_id = uuid.uuid4(), uuid.uuid4()
    endpoint.members |= {str(conversation_id): ["alice", "bob"], str(other_id): ["alice"]}
    await membership.members(conversation_id)
    await membership.members(other_id)

    endpoint.members[str(conversation_id)] = ["alice"]
    await membership.handle_event(member_event(event_type, conversation_id))

    with pytest.raises(NotFound):
        await membership.require_member(conversation_id, "bob")
    await membership.members(other_id)
    assert endpoint.calls == 3  # the other conversation stayed cached


async def test_other_events_leave_the_cache_alone(
    membership: Membership, endpoint: MembersEndpoint
) -> None:
    conversation_id = uuid.uuid4()
    endpoint.members[str(conversation_id)] = ["alice"]
    await membership.members(conversation_id)
    await membership.handle_event(member_event("conversation.updated", conversation_id))
    await membership.members(conversation_id)
    assert endpoint.calls == 1


async def test_a_resubscription_forgets_everything(
    membership: Membership, endpoint: MembersEndpoint
) -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]
    for conversation_id in ids:
        endpoint.members[str(conversation_id)] = ["alice"]
        await membership.members(conversation_id)
    await membership.on_reconnect()
    for conversation_id in ids:
        await membership.members(conversation_id)
    assert endpoint.calls == 4


async def test_the_cache_is_not_used_while_events_cannot_arrive(
    membership: Membership, endpoint: MembersEndpoint
) -> None:
    conversation_id = uuid.uuid4()
    endpoint.members[str(conversation_id)] = ["alice"]
    subscribed = False
    membership.trust_cache_while(lambda: subscribed)

    await membership.members(conversation_id)
    await membership.members(conversation_id)
    assert endpoint.calls == 2
    subscribed = True
    await membership.members(conversation_id)
    assert endpoint.calls == 2


async def test_an_answer_that_raced_an_invalidation_is_not_cached(
    membership: Membership, endpoint: MembersEndpoint
) -> None:
    conversation_id = uuid.uuid4()
    endpoint.members[str(conversation_id)] = ["alice", "bob"]
    # bob is removed while the (old) member list is on its way back.
    endpoint.before_answer = lambda: membership.forget(conversation_id)

    old = await membership.members(conversation_id)
    endpoint.before_answer = None
    endpoint.members[str(conversation_id)] = ["alice"]

    assert "bob" in old
    with pytest.raises(NotFound):
        await membership.require_member(conversation_id, "bob")


async def test_unknown_conversations_and_non_members_are_the_same_404(
    membership: Membership, endpoint: MembersEndpoint
) -> None:
    conversation_id = uuid.uuid4()
    endpoint.members[str(conversation_id)] = ["alice"]
    with pytest.raises(NotFound) as unknown:
        await membership.require_member(uuid.uuid4(), "alice")
    with pytest.raises(NotFound) as not_member:
        await membership.require_member(conversation_id, "mallory")
    assert unknown.value.instance_code == not_member.value.instance_code
    assert unknown.value.detail == not_member.value.detail


async def test_a_malformed_answer_is_a_502(clock: ManualClock) -> None:
    client = UpstreamClient(
        "conversations_service",
        "http://conversations",
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json={"members": 3})),
    )
    membership = Membership(client, FixedToken(), clock=clock)  # type: ignore[arg-type]
    with pytest.raises(BadGateway):
        await membership.members(uuid.uuid4())
