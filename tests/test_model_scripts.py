"""A stateful model test of the scripts that own work, against a real redis-server.

Three workers (actors) claim, beat, settle (answered or failed), split, end and lease on
one batch, in any order hypothesis draws; the user retries the failed prompts at any time,
even while chunks run; a fault rule lapses a claim as an expired TTL would, another makes
the fleet go silent (a stalled Redis), another cancels the batch. After every step the
invariants are checked against what Redis holds:

- one holder per chunk: a chunk is waiting, held (under exactly one live token) or gone;
- no lost claim revived: a token its worker was told it lost never holds a chunk again;
- a chunk leaves the queue only when every prompt of it is settled (or split);
- no prompt is carried by two chunks (it would be sent twice);
- the counts equal the states, and no lapse count goes below zero;
- no lease is granted for a stopped batch.

The claims' TTL is long here (a minute) and lapses are the model's rule instead, so
that a failure shrinks to the same shortest sequence every time. ``make test`` draws 80
examples; the chaos run draws ``MODEL_EXAMPLES`` (400). A sequence it found is kept
below as a plain test, replayed step by step.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis

from contract import keys
from contract.batches import RetryRefused
from contract.config import QueueSettings
from contract.models import JobError, JobResult
from contract.states import PROMPT_STATES
from producer.api import BatchQueue
from tests.batching import lines
from tests.beats import fleet_heard, heartbeat, redis_ms
from worker.claims import ChunkClaim, ChunkClaims
from worker.leases import Cooldown, LeaseBook
from worker.proxies import Identity

QUEUE = "model:queue"
PROMPTS = 8  # a batch of 8, in chunks of 1 (a small batch is spread over 8 chunks)
ACTORS = 3
EXAMPLES = int(os.environ.get("MODEL_EXAMPLES", "80"))


def make_machine(redis_url: str) -> type[RuleBasedStateMachine]:
    class WorkOwnership(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.redis = Redis.from_url(redis_url)
            self.run(self.redis.flushdb())
            self.store = BatchQueue(
                self.redis, QueueSettings(redis_url=redis_url, queue_name=QUEUE, chunk_size=4)
            )
            self.batch_id = self.run(self.store.enqueue(lines(PROMPTS))).batch_id
            self.run(fleet_heard(self.redis))
            self.claims = [
                ChunkClaims(self.redis, queue_name=QUEUE, ttl_seconds=60, keep_seconds=600)
                for _ in range(ACTORS)
            ]
            self.books = [self._book() for _ in range(ACTORS)]
            self.held: list[dict[str, ChunkClaim]] = [{} for _ in range(ACTORS)]
            self.lost_tokens: set[str] = set()
            self.stopped = False
            self.leases_after_stop: list[str] = []

        def run(self, coro):  # type: ignore[no-untyped-def]
            return self.loop.run_until_complete(coro)

        def _book(self) -> LeaseBook:
            book = LeaseBook(self.redis, fleet_cap=4, burst=1, ttl_seconds=60,
                             backoff_base_seconds=1, backoff_cap_seconds=5)  # fmt: skip
            identity = Identity("p1", "http://p1:1", max_inflight=4, rate_per_second=0)
            self.run(book.register([identity]))
            self.run(self.redis.hset(keys.identity_field("probe"), "p1", 0))
            return book

        def teardown(self) -> None:
            self.run(self.redis.aclose())
            self.loop.close()

        # -- the actors ---------------------------------------------------------------------

        @rule(actor=st.integers(0, ACTORS - 1))
        def claim(self, actor: int) -> None:
            taken = self.run(self.claims[actor].take(1, hands_free=not self.held[actor]))
            for claim in taken.claims:
                assert claim.token not in self.lost_tokens
                self.held[actor][claim.key] = claim

        @rule(actor=st.integers(0, ACTORS - 1))
        def beat(self, actor: int) -> None:
            beat, lost = heartbeat(self.redis, claims=self.claims[actor],
                                   book=self.books[actor],
                                   chunks=list(self.held[actor].values()))  # fmt: skip
            self.run(beat.beat())
            for chunk_id in lost.get("chunks", []):
                self.lost_tokens.add(self.held[actor].pop(chunk_id).token)

        @precondition(lambda self: any(self.held))
        @rule(actor=st.integers(0, ACTORS - 1), data=st.data())
        def settle(self, actor: int, data: st.DataObject) -> None:
            """The actor stores the result (an answer or a failure) of a prompt of a chunk it
            believes it holds (a worker that does not know yet that it lost its claim does
            the same)."""
            if not self.held[actor]:
                return
            chunk_id = data.draw(st.sampled_from(sorted(self.held[actor])))
            index = self._indices(chunk_id)[0]
            created = self.run(self.store.store.created_at(self.batch_id))
            [request] = self.run(self.store.store.requests(self.batch_id, [index], created))
            if data.draw(st.booleans()):
                result = JobResult.for_request(request, status="succeeded", content="ok")
            else:
                error = JobError(type="UpstreamError", message="HTTP 502")
                result = JobResult.for_request(request, status="failed", error=error)
            self.run(self.store.store.ledger.save_results([result]))

        @precondition(lambda self: any(self.held))
        @rule(actor=st.integers(0, ACTORS - 1), how=st.sampled_from(
            ["done", "hand_back", "lapse"]), data=st.data())  # fmt: skip
        def end(self, actor: int, how: str, data: st.DataObject) -> None:
            if not self.held[actor]:
                return
            chunk_id = data.draw(st.sampled_from(sorted(self.held[actor])))
            claim = self.held[actor].pop(chunk_id)
            ended = self.run(self.claims[actor].end(
                claim, how, batch_id=self.batch_id, indices=self._indices(chunk_id)))  # fmt: skip
            if ended == 0:
                self.lost_tokens.add(claim.token)

        @precondition(lambda self: any(self.held))
        @rule(actor=st.integers(0, ACTORS - 1), data=st.data())
        def split(self, actor: int, data: st.DataObject) -> None:
            if not self.held[actor]:
                return
            chunk_id = data.draw(st.sampled_from(sorted(self.held[actor])))
            claim = self.held[actor].pop(chunk_id)
            made = self.run(self.claims[actor].split(claim, self.batch_id,
                                                     self._indices(chunk_id)))  # fmt: skip
            if not made:
                self.lost_tokens.add(claim.token)

        @rule(actor=st.integers(0, ACTORS - 1))
        def lease(self, actor: int) -> None:
            grants = self.run(self.books[actor].exchange((), [self.batch_id]))
            for lease in grants.leases:
                if self.stopped:
                    self.leases_after_stop.append(lease.token)
                self.run(self.books[actor].release([(lease, Cooldown("ok"))]))

        @rule()
        def retry(self) -> None:
            """The user retries the failed prompts (refused once the batch is stopped)."""
            try:
                self.run(self.store.retry(self.batch_id))
            except RetryRefused:
                assert self.stopped

        # -- the faults ---------------------------------------------------------------------

        @precondition(lambda self: any(self.held))
        @rule(actor=st.integers(0, ACTORS - 1), data=st.data())
        def lapse(self, actor: int, data: st.DataObject) -> None:
            """The actor's claim expires (it was frozen, or cut off, past the TTL)."""
            if not self.held[actor]:
                return
            chunk_id = data.draw(st.sampled_from(sorted(self.held[actor])))
            self.lost_tokens.add(self.held[actor][chunk_id].token)  # lapsed: lost in Redis's eyes
            self.run(self.redis.delete(keys.arq_in_progress(chunk_id)))
            past = self.run(redis_ms(self.redis)) - 1
            self.run(self.redis.zadd(keys.held_chunks(QUEUE), {chunk_id: past}, xx=True))

        @rule()
        def silence(self) -> None:
            """Every heartbeat stops for a while (a stalled Redis, a paused fleet)."""
            self.run(self.redis.set(keys.fleet_beat(), self.run(redis_ms(self.redis)) - 60_000))

        @rule()
        def cancel(self) -> None:
            self.run(self.store.store.stopper.begin(self.batch_id, "cancelled"))
            self.stopped = True

        # -- what must always hold ----------------------------------------------------------

        def _indices(self, chunk_id: str) -> list[int]:
            raw = self.run(self.redis.get(keys.arq_job(chunk_id)))
            if raw is None:
                return [int(chunk_id.rsplit("/", 1)[-1])] if "/" in chunk_id else [0]
            return list(json.loads(raw)["a"][0]["indices"])

        @invariant()
        def one_place_per_chunk_and_no_lost_claim_revived(self) -> None:
            queued = {k.decode() for k in self.run(self.redis.zrange(QUEUE, 0, -1))}
            held = {k.decode() for k in self.run(
                self.redis.zrange(keys.held_chunks(QUEUE), 0, -1))}  # fmt: skip
            assert not queued & held, f"both waiting and held: {queued & held}"
            for chunk_id in held | queued:
                token = self.run(self.redis.get(keys.arq_in_progress(chunk_id)))
                if token is not None:
                    assert chunk_id in held, f"{chunk_id} has a holder but is not held"
                    assert token.decode() not in self.lost_tokens, f"{chunk_id}: lost, revived"

        @invariant()
        def a_chunk_leaves_only_when_settled(self) -> None:
            queued = {k.decode() for k in self.run(self.redis.zrange(QUEUE, 0, -1))}
            held = {k.decode() for k in self.run(
                self.redis.zrange(keys.held_chunks(QUEUE), 0, -1))}  # fmt: skip
            states = self.run(self.redis.get(keys.batch_states(self.batch_id))) or b""
            carried: set[int] = set()
            for chunk_id in queued | held:
                carried.update(self._indices(chunk_id))
            for index in range(PROMPTS):
                byte = states[index // 2] if index // 2 < len(states) else 0
                code = byte >> 4 if index % 2 == 0 else byte & 0x0F
                if code < 3 and not self.stopped:
                    assert index in carried, f"prompt {index} unsettled and in no chunk"

        @invariant()
        def no_prompt_in_two_chunks(self) -> None:
            queued = {k.decode() for k in self.run(self.redis.zrange(QUEUE, 0, -1))}
            held = {k.decode() for k in self.run(
                self.redis.zrange(keys.held_chunks(QUEUE), 0, -1))}  # fmt: skip
            carriers: dict[int, str] = {}
            for chunk_id in sorted(queued | held):
                for index in self._indices(chunk_id):
                    assert index not in carriers, f"prompt {index}: {carriers[index]}, {chunk_id}"
                    carriers[index] = chunk_id

        @invariant()
        def counts_equal_states(self) -> None:
            counts = {k.decode(): int(v) for k, v in self.run(
                self.redis.hgetall(keys.batch_counts(self.batch_id))).items()}  # fmt: skip
            states = self.run(self.redis.get(keys.batch_states(self.batch_id))) or b""
            tally: Counter[str] = Counter()
            for index in range(PROMPTS):
                byte = states[index // 2] if index // 2 < len(states) else 0
                tally[PROMPT_STATES[byte >> 4 if index % 2 == 0 else byte & 0x0F]] += 1
            assert {s: counts.get(s, 0) for s in PROMPT_STATES} == {
                s: tally[s] for s in PROMPT_STATES
            }
            lapses = self.run(self.redis.hgetall(keys.chunk_lapses()))
            assert all(int(v) >= 0 for v in lapses.values()), lapses

        @invariant()
        def no_lease_for_a_stopped_batch(self) -> None:
            assert not self.leases_after_stop, self.leases_after_stop

    return WorkOwnership


@pytest.mark.integration
def test_the_scripts_keep_ownership_under_any_interleaving(redis_server: str) -> None:
    machine = make_machine(redis_server)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES, stateful_step_count=40, deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )  # fmt: skip


class _Draws:
    """Stands in for hypothesis's ``data``: the draws of a recorded sequence, in order."""

    def __init__(self, *values: object) -> None:
        self.values = list(values)

    def draw(self, strategy: object) -> object:
        return self.values.pop(0)


@pytest.mark.integration
def test_a_retry_while_a_failed_prompts_chunk_is_held_lets_that_chunk_run_it(
    redis_server: str,
) -> None:
    """Found with 400 examples: claim, the prompt fails, retry. The retry queued a new
    chunk for the prompt while the held chunk still carried it: sent twice."""
    state = make_machine(redis_server)()
    try:
        state.claim(actor=0)
        [chunk_id] = state.held[0]
        state.settle(actor=0, data=_Draws(chunk_id, False))
        state.retry()
        state.no_prompt_in_two_chunks()
        state.a_chunk_leaves_only_when_settled()
        state.counts_equal_states()
    finally:
        state.teardown()
