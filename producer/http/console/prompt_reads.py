"""What one prompt's page shows: its request, its result, its state, and its attempts (the
last few failed ones its workers logged, with when, identity, site and error)."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from contract import keys
from contract.models import JobResult, StoredRequest
from contract.states import PROMPT_STATES
from producer.api import BatchQueue
from producer.http.console.batch_reads import SHOWN_STATES, parsed_result


@dataclass(frozen=True)
class Attempt:
    """One failed attempt of a prompt, as its worker recorded it."""

    at: float  # epoch s
    kind: str
    identity: str
    site: str
    message: str


@dataclass(frozen=True)
class AttemptRow:
    """One line of a prompt's attempts, as its page shows it."""

    number: int | None  # its place among the attempts (None: not an attempt, an end)
    at: float | None
    identity: str
    site: str
    outcome: str  # failed, succeeded, cancelled …
    error_type: str
    message: str
    last: bool = False  # the attempt the prompt ended with


@dataclass(frozen=True)
class PromptDetail:
    index: int
    request: StoredRequest | None
    result: JobResult | None
    state: str  # as SHOWN_STATES says
    failed_attempts: int
    kinds: dict[str, int] = field(default_factory=dict)  # failed attempts by error type
    started_at: float | None = None
    last: list[Attempt] = field(default_factory=list)  # the last few failed attempts

    @property
    def earlier(self) -> int:
        """Failed attempts before the ones logged (not kept)."""
        return max(0, self.failed_attempts - len(self.last))

    def attempts(self) -> list[AttemptRow]:
        """Every attempt kept, oldest first, then how the prompt ended if no attempt says."""
        rows = [AttemptRow(self.earlier + n, a.at, a.identity, a.site, "failed", a.kind,
                           a.message) for n, a in enumerate(self.last, 1)]  # fmt: skip
        result = self.result
        if result is None:
            return rows
        finished = result.finished_at.timestamp()
        error = result.error
        if result.status == "succeeded":
            rows.append(AttemptRow(self.failed_attempts + 1, finished, "", "", "succeeded", "",
                                   "", last=True))  # fmt: skip
        elif rows and error is not None and rows[-1].error_type == error.type:
            rows[-1] = replace(rows[-1], last=True)  # its last failed attempt ended it
        else:  # it ended without an attempt of its own: cancelled, expired, a crash
            rows.append(AttemptRow(None, finished, "", "", result.status,
                                   error.type if error else "", error.message if error else "",
                                   last=True))  # fmt: skip
        return rows


async def prompt_detail(queue: BatchQueue, batch_id: str, index: int) -> PromptDetail:
    """Everything kept about one prompt, in one pipeline."""
    async with queue.redis.pipeline(transaction=False) as pipe:
        pipe.hget(keys.batch_requests(batch_id), index)
        pipe.hget(keys.batch_results(batch_id), index)
        pipe.hget(keys.batch_attempts(batch_id), index)
        pipe.hget(keys.batch_attempt_log(batch_id), index)
        pipe.execute_command("BITFIELD", keys.batch_states(batch_id), "GET", "u4", f"#{index}")
        request, result, tried, logged, (code,) = await pipe.execute()
    parsed_request = None
    if request is not None:
        with contextlib.suppress(ValueError):  # shown as unreadable
            parsed_request = StoredRequest.model_validate_json(request)
    record = _json_of(tried, dict)
    last = [
        Attempt(float(a.get("at") or 0), str(a.get("kind", "")), str(a.get("identity", "")),
                str(a.get("site", "")), str(a.get("message", "")))
        for a in _json_of(logged, list) if isinstance(a, dict)
    ]  # fmt: skip
    kinds = record.get("kinds") if isinstance(record.get("kinds"), dict) else {}
    parsed = parsed_result(result)
    failed = int(record.get("total") or 0)  # while it runs: the count, gone once it settles
    if parsed is not None:
        failed = max(0, parsed.attempts - (1 if parsed.status == "succeeded" else 0))
    return PromptDetail(
        index=index, request=parsed_request, result=parsed,
        state=SHOWN_STATES[PROMPT_STATES[int(code)]],
        failed_attempts=failed,
        kinds={str(k): int(v) for k, v in kinds.items()},
        started_at=float(record["started_at"]) if record.get("started_at") else None, last=last,
    )  # fmt: skip


def _json_of(raw: bytes | None, kind: type) -> Any:
    """``raw`` as JSON of that kind (dict or list); an empty one if it is not."""
    try:
        found = json.loads(raw) if raw else kind()
    except ValueError:
        return kind()
    return found if isinstance(found, kind) else kind()
