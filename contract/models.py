"""The job contract: what a producer enqueues and what a worker stores back.

A prompt is the unit of work and carries its own job ID (``<batch_id>.<index>``),
result, attempts, retry and cancel; an arq job is only the transport: a chunk
naming several prompts of one batch by index (``ChunkPayload``). Users never see it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from contract.model_map import check_name
from contract.states import BatchState

Role = Literal["system", "user", "assistant", "tool"]
NonEmptyText = Annotated[str, StringConstraints(min_length=1)]
JobStatus = Literal["succeeded", "failed", "cancelled"]
FinishReason = Literal["stop", "length", "tool_calls"]


def _is_none(value: object) -> bool:
    return value is None


# A field that is left out of what is stored and shown while it is None, so that requests
# and results without tools read and look as they did before tools existed.
def _absent_when_none() -> Any:
    return Field(None, exclude_if=_is_none)


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_now() -> str:
    return utc_now().isoformat()


def parse_timestamp(raw: bytes | str | None) -> datetime | None:
    """A timestamp as the batch record keeps it (ISO 8601), None where there is none."""
    if not raw:
        return None
    return datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else raw)


TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # OpenAI's rule for a function's name


class ToolCall(BaseModel):
    """One call of a function: an assistant's in a history, or one the answer made.

    ``arguments`` is the JSON text of the arguments object, as OpenAI carries it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: NonEmptyText
    name: Annotated[str, StringConstraints(pattern=TOOL_NAME_PATTERN)]
    arguments: str


class Message(BaseModel):
    """One chat message. An assistant's may carry the ``tool_calls`` it made (its content
    may then be empty); a ``tool`` message carries the result of the call it names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] | None = _absent_when_none()
    tool_call_id: str | None = _absent_when_none()

    @field_validator("role", mode="before")
    @classmethod
    def _developer_is_system(cls, role: object) -> object:
        # OpenAI's newer SDKs send "developer" where older ones sent "system": one role here.
        return "system" if role == "developer" else role

    @model_validator(mode="after")
    def _content_and_calls(self) -> Message:
        if self.tool_calls is not None and (self.role != "assistant" or not self.tool_calls):
            raise ValueError("tool_calls must be a non-empty list, on an assistant message only")
        if (self.role == "tool") != bool(self.tool_call_id):
            raise ValueError("a tool message, and only one, names the tool_call_id it answers")
        if not self.content.strip() and self.role != "tool" and not self.tool_calls:
            raise ValueError("content must be a non-empty string")
        return self

    def openai(self) -> dict[str, Any]:
        """The message as OpenAI's chat completions API takes it."""
        if self.tool_calls:
            calls = [call_json(call) for call in self.tool_calls]
            return {"role": self.role, "content": self.content or None, "tool_calls": calls}
        if self.tool_call_id is not None:
            return {"role": self.role, "content": self.content, "tool_call_id": self.tool_call_id}
        return {"role": self.role, "content": self.content}


def call_json(call: ToolCall) -> dict[str, Any]:
    """A call as OpenAI shows one (``message.tool_calls[i]``)."""
    function = {"name": call.name, "arguments": call.arguments}
    return {"id": call.id, "type": "function", "function": function}


def check_model(model: str) -> str:
    """The model name if it is shaped like one, else a ValueError.

    Which names are accepted is the producer's to say (``contract.model_map``, from its
    settings): a worker takes the name a prompt was enqueued with as it is."""
    return check_name(model)


MAX_STOP_SEQUENCES = 4
ToolChoiceMode = Literal["auto", "none", "required"]


class NamedTool(BaseModel):
    """A ``tool_choice`` that names the one function the answer must call."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, StringConstraints(pattern=TOOL_NAME_PATTERN)]


class RequestParams(BaseModel):
    """The request parameters a worker honours (``producer.params`` has the whole policy).

    ``stop``: the answer is cut before the first of these strings, as OpenAI does.
    ``json_object``: OpenAI's ``response_format`` ``{"type": "json_object"}``: the site is
    asked for one JSON object, and an answer that holds none is an ``AnswerNotJson`` error.
    ``json_schema``: ``{"type": "json_schema"}``'s schema, as JSON text: the site is asked
    for an object matching it, and an answer that does not is an ``AnswerOffSchema`` error.
    ``max_tokens``: the answer is cut at this many tokens (OpenAI's ``max_tokens``,
    ``max_completion_tokens``, ``max_output_tokens``), and then finishes with ``length``.
    ``tools``: the functions offered, as the JSON text of a list of ``{"name",
    "description", "parameters", "strict"}``: the site is told of them and asked for
    either an answer or the calls it makes, and each call is checked against its
    function's ``parameters`` (a ``ToolCallOffSchema`` error when one is off).
    ``tool_choice``: ``auto`` (the default, when None), ``none`` (no call), ``required``
    (at least one call), or the one function to call. ``parallel_tool_calls``: False
    keeps an answer to one call (None: OpenAI's default, several may be made).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    stop: tuple[NonEmptyText, ...] = Field((), max_length=MAX_STOP_SEQUENCES)
    json_object: bool = False
    json_schema: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    tools: str | None = _absent_when_none()
    tool_choice: ToolChoiceMode | NamedTool | None = _absent_when_none()
    parallel_tool_calls: bool | None = _absent_when_none()

    @property
    def given(self) -> bool:
        return (
            bool(self.stop)
            or self.json_object
            or self.json_schema is not None
            or self.max_tokens is not None
            or self.tools is not None
        )

    @property
    def calls_tools(self) -> bool:
        """Whether the answer may (or must) be calls of the functions offered."""
        return self.tools is not None and self.tool_choice != "none"

    @property
    def wants_json(self) -> bool:
        """Whether the answer must be one JSON object (JSON mode, or a schema)."""
        return self.json_object or self.json_schema is not None


NO_PARAMS = RequestParams()


class PromptRequest(BaseModel):
    """One prompt as it travels from the producer to a worker."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    batch_id: str
    custom_id: str
    index: int = Field(ge=0, description="Position in the batch's input, from 0.")
    messages: tuple[Message, ...] = Field(min_length=1)
    model: str
    enqueued_at: datetime
    params: RequestParams = NO_PARAMS
    site: str | None = Field(
        None, description="The one site (its name) this prompt may be sent to; None: any."
    )

    @field_validator("model")
    @classmethod
    def _known_model(cls, model: str) -> str:
        return check_model(model)

    def stored_json(self) -> str:
        """What the batch keeps per prompt: the rest is the batch's, or the index."""
        return StoredRequest.of(
            self.custom_id, self.messages, self.model, self.params, site=self.site
        )

    @classmethod
    def from_stored(
        cls, raw: str | bytes, *, batch_id: str, index: int, enqueued_at: datetime
    ) -> PromptRequest:
        """The request back from the batch's record; ``ValidationError`` if it is not one."""
        stored = StoredRequest.model_validate_json(raw)  # checked here, once: no second pass
        return cls.model_construct(
            job_id=job_id_for(batch_id, index),
            batch_id=batch_id,
            custom_id=stored.custom_id,
            index=index,
            messages=stored.messages,
            model=stored.model,
            enqueued_at=enqueued_at,
            params=stored.params or NO_PARAMS,
            site=stored.site,
        )


class StoredRequest(BaseModel):
    """One prompt as the batch's requests hash holds it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    custom_id: str
    messages: tuple[Message, ...] = Field(min_length=1)
    model: str
    params: RequestParams | None = None  # left out when none is given
    site: str | None = None  # left out when the prompt may go to any site

    @classmethod
    def of(
        cls,
        custom_id: str,
        messages: tuple[Message, ...],
        model: str,
        params: RequestParams = NO_PARAMS,
        *,
        site: str | None = None,
    ) -> str:
        """The stored JSON of one request; ``params`` and ``site`` only when given."""
        stored = cls(
            custom_id=custom_id,
            messages=messages,
            model=model,
            params=params if params.given else None,
            site=site,
        )
        return stored.model_dump_json(exclude_none=True)


def stored_prompt(
    raw: str | bytes, *, batch_id: str, index: int, enqueued_at: datetime
) -> PromptRequest | JobResult:
    """The request back from the batch's record, or, when no version of this code can read
    it (a newer producer's field during a rolling upgrade, a corrupted record), its one
    result: failed ``BadRequestData``, with the ``custom_id`` and model kept wherever they
    can still be read, so that its output line joins back to its input."""
    try:
        return PromptRequest.from_stored(
            raw, batch_id=batch_id, index=index, enqueued_at=enqueued_at
        )
    except ValueError as error:  # pydantic's ValidationError is one
        return unreadable_request(raw, error, batch_id=batch_id, index=index,
                                  enqueued_at=enqueued_at)  # fmt: skip


def unreadable_request(
    raw: str | bytes, error: ValueError, *, batch_id: str, index: int, enqueued_at: datetime
) -> JobResult:
    """The failed ``BadRequestData`` result of a stored request that cannot be read."""
    custom_id = model = ""
    try:
        loose = json.loads(raw)
    except ValueError:
        loose = None
    if isinstance(loose, dict):
        custom_id = _writable(loose["custom_id"]) if isinstance(loose.get("custom_id"), str) else ""
        model = _writable(loose["model"]) if isinstance(loose.get("model"), str) else ""
    return JobResult(
        job_id=job_id_for(batch_id, index), batch_id=batch_id, custom_id=custom_id,
        status="failed", model=model, enqueued_at=enqueued_at, finished_at=utc_now(),
        error=JobError(type="BadRequestData", message=_unreadable_why(error)),
    )  # fmt: skip


def _writable(text: str) -> str:
    """``text`` as UTF-8 can hold it: a lone surrogate (a damaged record's) written as its
    escape, so the result that names it can be stored."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def result_line(result: JobResult) -> str:
    """The stored line of a result (its native JSON). A value UTF-8 cannot hold (a lone
    surrogate in an answer or an ID) is written as its JSON escape instead of failing."""
    try:
        return result.model_dump_json()
    except ValueError:  # pydantic's serialization error: an unpaired surrogate
        return json.dumps(result.model_dump(mode="json"), separators=(",", ":"))


def _unreadable_why(error: ValueError) -> str:
    """Where a stored request is off, in a few words (names of fields, never its text)."""
    first = ""
    if isinstance(error, ValidationError) and error.errors():
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "the request"
        first = f": {where}: {problem['type']}"
    return (
        "the stored request is not one this worker can read (written by a newer "
        f"version, or damaged){first}"
    )[:300]


def job_id_for(batch_id: str, index: int) -> str:
    return f"{batch_id}.{index}"


def split_job_id(job_id: str) -> tuple[str, int] | None:
    """(batch ID, index) of a job ID, or None if it is not shaped like one."""
    batch_id, _, index = job_id.rpartition(".")
    if not batch_id or not index.isdigit():
        return None
    return batch_id, int(index)


class ChunkPayload(BaseModel):
    """The single argument of an arq job: which prompts of one batch it carries."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str = Field(min_length=1, max_length=64)
    indices: tuple[int, ...] = Field(min_length=1)


class Usage(BaseModel):
    """Tokens as OpenAI would bill them for these messages and this answer."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class JobError(BaseModel):
    type: str = Field(description="The error class, e.g. RateLimited, ContentRefused.")
    message: str


class JobResult(BaseModel):
    """Exactly one per job ID, stored under ``keys.result(job_id)``."""

    job_id: str
    batch_id: str
    custom_id: str
    status: JobStatus
    content: str | None = None
    error: JobError | None = None
    model: str
    attempts: int = 0
    enqueued_at: datetime
    started_at: datetime | None = None
    finished_at: datetime
    usage: Usage | None = None
    finish_reason: FinishReason | None = Field(
        None,
        description="Why a successful answer ended (OpenAI's): 'length' if cut at max_tokens, "
        "'tool_calls' if it is calls of the functions offered.",
    )
    tool_calls: tuple[ToolCall, ...] | None = Field(
        None, exclude_if=_is_none, description="The calls the answer made (content is then None)."
    )
    site: str | None = Field(
        None, exclude_if=_is_none, description="The site that answered (or last refused) it."
    )

    @classmethod
    def for_request(
        cls,
        request: PromptRequest,
        *,
        status: JobStatus,
        content: str | None = None,
        error: JobError | None = None,
        attempts: int = 0,
        started_at: datetime | None = None,
        usage: Usage | None = None,
        cut: bool = False,
        tool_calls: tuple[ToolCall, ...] | None = None,
        site: str | None = None,
    ) -> JobResult:
        """``cut``: the answer was cut at ``max_tokens`` (finish_reason ``length``);
        ``tool_calls``: the answer is these calls, not ``content`` (``tool_calls``)."""
        if status != "succeeded":
            finish_reason: FinishReason | None = None
        else:
            finish_reason = "tool_calls" if tool_calls else "length" if cut else "stop"
        return cls(
            job_id=request.job_id,
            batch_id=request.batch_id,
            custom_id=request.custom_id,
            status=status,
            content=None if tool_calls else content,
            error=error,
            model=request.model,
            attempts=attempts,
            enqueued_at=request.enqueued_at,
            started_at=started_at,
            finished_at=utc_now(),
            usage=usage,
            finish_reason=finish_reason,
            tool_calls=tool_calls or None,
            site=site,
        )


class BatchStatus(BaseModel):
    batch_id: str
    state: BatchState
    total: int
    queued: int
    in_progress: int
    succeeded: int
    failed: int
    cancelled: int
    waiting: int = Field(0, description="Held by a worker, waiting for capacity or a backoff.")
    done: bool
    created_at: datetime | None = None
    in_progress_at: datetime | None = None
    expires_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    expiring_at: datetime | None = None
    expired_at: datetime | None = None
    cancelling_at: datetime | None = None
    cancelled_at: datetime | None = None
    completion_window: str = "24h"
    metadata: dict[str, str] = Field(default_factory=dict)
    errors: list[dict[str, object]] = Field(
        default_factory=list, description="Why the batch failed (its input's bad lines)."
    )
    answered_by_site: dict[str, int] = Field(
        default_factory=dict, description="Prompts each site answered (its name → how many)."
    )

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.cancelled
