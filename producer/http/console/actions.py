"""What the console changes: cancel a batch or one prompt, retry a batch's failures or one
prompt. Each asks first, on a page of its own that names the count (``GET``); the form
on it does it (``POST``).

No action is offered that the server would refuse, and a refusal (the batch moved on
meanwhile, a form from elsewhere) is a page saying why, never raw JSON. A retry takes
only the failures a new try may mend (``producer.retries``) and says how many it leaves
out and why.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web

from contract.batches import RETRYABLE_STATES, RetryRefused
from contract.models import JobError, JobResult, PromptRequest, utc_now
from producer.http.console.access import Visitor
from producer.http.console.batch_pages import CANCELLABLE, batch_path, find_batch
from producer.http.console.batch_reads import retryable_failed
from producer.http.console.prompt_reads import PromptDetail, prompt_detail
from producer.http.console.rendering import Refused, form_checked, render, signed_in
from producer.http.context import context_of
from producer.retries import may_succeed_again, why_not


def _confirm(request: web.Request, visitor: Visitor, **page: Any) -> web.Response:
    return render(request, "confirm.html", visitor=visitor, section="batches", **page)


def _left_out(counts: Counter[str]) -> list[str]:
    return [f"{n:,} {kind}: {why_not(kind)}" for kind, n in counts.most_common()]


def _plural(count: int, one: str) -> str:
    return f"{count:,} {one}{'' if count == 1 else 's'}"


# -- a batch -----------------------------------------------------------------------------


@signed_in
async def cancel_batch(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    status, _ = await find_batch(request, visitor)
    back = batch_path(status.batch_id)
    if status.state not in CANCELLABLE:
        raise Refused(409, "Nothing to cancel", f"Batch {status.batch_id} is {status.state}: "
                      "only a batch still running can be cancelled.", back=back)  # fmt: skip
    left = status.total - status.finished
    if request.method == "POST":
        await form_checked(request, visitor)
        await context_of(request).queue.cancel(status.batch_id)
        raise web.HTTPSeeOther(back)
    return _confirm(
        request, visitor, title=f"Cancel batch {status.batch_id}?",
        question=f"Cancel the {_plural(left, 'prompt')} of this batch not yet finished?",
        details=[
            "Those queued are cancelled at once; those a worker holds end cancelled unless "
            "they were already sent.",
            f"The {_plural(status.finished, 'prompt')} finished keep their results.",
        ],
        action=f"{back}/cancel", button=f"Cancel {_plural(left, 'prompt')}", danger=True,
        back=back, back_label="Keep it running",
    )  # fmt: skip


@signed_in
async def retry_batch(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    status, _ = await find_batch(request, visitor)
    back = batch_path(status.batch_id)
    if status.state not in RETRYABLE_STATES:
        raise Refused(409, "Retry refused", str(RetryRefused(status.batch_id, status.state)),
                      back=back)  # fmt: skip
    queue = context_of(request).queue
    chosen, left_out = await retryable_failed(queue, status)
    if not chosen:
        raise Refused(409, "Nothing to retry", f"No failed prompt of batch {status.batch_id} "
                      "would fare better on a new try: " + "; ".join(_left_out(left_out) or
                      ["none failed"]) + ".", back=back)  # fmt: skip
    if request.method == "POST":
        await form_checked(request, visitor)
        try:
            await queue.store.requeue_failed(status.batch_id, queue.settings.chunk_size,
                                             only=chosen)  # fmt: skip
        except RetryRefused as refused:
            raise Refused(409, "Retry refused", str(refused), back=back) from None
        raise web.HTTPSeeOther(back)
    details = ["They go back to the queue under their own IDs; what they failed with is "
               "forgotten."]  # fmt: skip
    if left_out:
        details.append(f"{_plural(sum(left_out.values()), 'failed prompt')} "
                       f"{'is' if sum(left_out.values()) == 1 else 'are'} left out, as a new "
                       "try would fail the same way:")  # fmt: skip
    return _confirm(
        request, visitor, title=f"Retry batch {status.batch_id}?",
        question=f"Retry {_plural(len(chosen), 'failed prompt')}?", details=details,
        reasons=_left_out(left_out), action=f"{back}/retry",
        button=f"Retry {_plural(len(chosen), 'prompt')}", danger=False, back=back,
        back_label="Leave it as it is",
    )  # fmt: skip


# -- one prompt --------------------------------------------------------------------------


async def find_prompt(request: web.Request, visitor: Visitor) -> tuple[Any, PromptDetail, str]:
    """The batch, the prompt the path names and its page's path; a 404 page if none."""
    status, extras = await find_batch(request, visitor)
    index = int(request.match_info["index"])
    if index >= status.total:
        raise Refused(404, "No such prompt", f"Batch {status.batch_id} has "
                      f"{_plural(status.total, 'prompt')}: there is no #{index}.",
                      back=batch_path(status.batch_id))  # fmt: skip
    detail = await prompt_detail(context_of(request).queue, status.batch_id, index)
    return (status, extras), detail, f"{batch_path(status.batch_id)}/prompts/{index}"


def retry_refusal(status: Any, detail: PromptDetail) -> str:
    """Why this prompt cannot be retried, or "" if it can."""
    if detail.state != "failed":
        return f"it is {detail.state}: only a failed prompt is retried"
    if status.state not in RETRYABLE_STATES:
        return f"its batch is {status.state}, and what it ended with stays as it is"
    kind = detail.result.error.type if detail.result and detail.result.error else "?"
    if not may_succeed_again(kind):
        return f"it failed with {kind}: {why_not(kind)}, and a new try would fail the same way"
    return ""


def cancel_refusal(status: Any, detail: PromptDetail) -> str:
    """Why this prompt cannot be cancelled, or "" if it can."""
    if detail.state != "queued":
        return (f"it is {detail.state}: only a prompt still queued (no worker holds it) is "
                "cancelled alone; cancel the batch to stop the rest")  # fmt: skip
    if status.state != "in_progress":
        return f"its batch is {status.state}"
    return ""


@signed_in
async def retry_prompt(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    (status, _), detail, path = await find_prompt(request, visitor)
    refusal = retry_refusal(status, detail)
    if refusal:
        raise Refused(409, "Retry refused", f"Prompt #{detail.index} is not retried: {refusal}.",
                      back=path)  # fmt: skip
    if request.method == "POST":
        await form_checked(request, visitor)
        queue = context_of(request).queue
        try:
            moved = await queue.store.requeue_failed(status.batch_id, queue.settings.chunk_size,
                                                     only=[detail.index])  # fmt: skip
        except RetryRefused as refused:
            raise Refused(409, "Retry refused", str(refused), back=path) from None
        if not moved:
            raise Refused(409, "Retry refused", "Another retry took this prompt meanwhile.",
                          back=path)  # fmt: skip
        raise web.HTTPSeeOther(path)
    return _confirm(
        request, visitor, title=f"Retry prompt #{detail.index}?",
        question=f"Retry 1 prompt ({_custom_id(detail)})?",
        details=["It goes back to the queue; what it failed with is forgotten."],
        action=f"{path}/retry", button="Retry 1 prompt", danger=False, back=path,
        back_label="Leave it as it is",
    )  # fmt: skip


@signed_in
async def cancel_prompt(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    (status, _), detail, path = await find_prompt(request, visitor)
    refusal = cancel_refusal(status, detail)
    if refusal:
        raise Refused(409, "Cancel refused", f"Prompt #{detail.index} is not cancelled: "
                      f"{refusal}.", back=path)  # fmt: skip
    if request.method == "POST":
        await form_checked(request, visitor)
        store = context_of(request).queue.store
        created = status.created_at or utc_now()
        requests = await store.requests(status.batch_id, [detail.index], created)
        if not requests or not await store.ledger.save_results(
            [_cancelled(requests[0])], only_queued=True
        ):
            raise Refused(409, "Cancel refused", "A worker took this prompt meanwhile: it runs "
                          "now. Cancel the batch to stop it before it is sent.",
                          back=path)  # fmt: skip
        raise web.HTTPSeeOther(path)
    return _confirm(
        request, visitor, title=f"Cancel prompt #{detail.index}?",
        question=f"Cancel 1 prompt ({_custom_id(detail)})?",
        details=["It is still queued: it ends cancelled and is never sent. The rest of the "
                 "batch runs on."],
        action=f"{path}/cancel", button="Cancel 1 prompt", danger=True, back=path,
        back_label="Keep it queued",
    )  # fmt: skip


def _custom_id(detail: PromptDetail) -> str:
    return detail.request.custom_id if detail.request else f"#{detail.index}"


def _cancelled(request: PromptRequest) -> JobResult:
    message = "the prompt was cancelled from the console before it was sent"
    return JobResult.for_request(request, status="cancelled",
                                 error=JobError(type="Cancelled", message=message))  # fmt: skip
