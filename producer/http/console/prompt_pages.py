"""One prompt's page: its messages and parameters, its state, every attempt recorded (time,
identity, site, error), its whole answer or error, and what may be done with it."""

from __future__ import annotations

from aiohttp import web

from producer.http.console.access import Visitor
from producer.http.console.actions import cancel_refusal, find_prompt, retry_refusal
from producer.http.console.batch_pages import batch_path
from producer.http.console.rendering import render, signed_in
from producer.params import body_params


@signed_in
async def prompt(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    (status, _), detail, path = await find_prompt(request, visitor)
    params = body_params(detail.request.params) if detail.request and detail.request.params else {}
    custom_id = detail.request.custom_id if detail.request else ""
    return render(
        request, "prompt.html", visitor=visitor, section="batches",
        title=f"Prompt {custom_id or '#' + str(detail.index)}", status=status, detail=detail,
        params=params, path=path, batch_path=batch_path(status.batch_id),
        retry_refusal=retry_refusal(status, detail), cancel_refusal=cancel_refusal(status, detail),
    )  # fmt: skip
