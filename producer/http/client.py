"""A batch through the HTTP API, as any OpenAI Batch API client runs one (plain aiohttp).

``run_batch_via_api`` uploads a JSONL file, creates a batch from it, polls it until it
ends, then downloads its output and error files: what ``chatgptes demo --via-api``
does, and what code written for OpenAI's SDK does, without needing the SDK.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

import aiohttp

ENDED = ("completed", "failed", "expired", "cancelled")


class ApiCallError(RuntimeError):
    """The API answered with an error: its HTTP status and OpenAI error object."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {error.get('message', error)}")
        self.status = status
        self.error = error


def answers_health(base_url: str, timeout: float = 1.0) -> bool:
    """Whether the API at ``base_url`` (``http://host:port/v1``) answers ``/healthz`` with
    200: it is up and reaches its Redis. For whoever starts ``chatgptes serve`` and waits."""
    root = base_url.rstrip("/").removesuffix("/v1")
    try:
        with urllib.request.urlopen(f"{root}/healthz", timeout=timeout) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


async def run_batch_via_api(
    base_url: str, api_key: str, jsonl_bytes: bytes, timeout: float, *, poll_seconds: float = 0.5
) -> list[dict[str, Any]]:
    """Every result line of the batch (the output and error files' lines, in input order).

    ``base_url`` ends in ``/v1`` (``http://127.0.0.1:8000/v1``). ``ApiCallError`` if the
    API refuses a step (a malformed file, say); ``TimeoutError`` if the batch has not
    ended within ``timeout`` seconds.
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    root = base_url.rstrip("/")
    async with aiohttp.ClientSession(headers=headers) as session:
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field(
            "file", jsonl_bytes, filename="batch.jsonl", content_type="application/jsonl"
        )
        uploaded = await _call(session, "POST", f"{root}/files", data=form)
        batch = await _call(session, "POST", f"{root}/batches", json={
            "input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        })  # fmt: skip
        batch = await _until_ended(session, f"{root}/batches/{batch['id']}", timeout, poll_seconds)
        lines: list[dict[str, Any]] = []
        for file_id in (batch["output_file_id"], batch["error_file_id"]):
            if file_id is not None:
                text = await _call(session, "GET", f"{root}/files/{file_id}/content", raw=True)
                lines += [json.loads(line) for line in text.splitlines() if line.strip()]
    return sorted(lines, key=_input_position)


async def _until_ended(
    session: aiohttp.ClientSession, url: str, timeout: float, poll_seconds: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        batch = await _call(session, "GET", url)
        if batch["status"] in ENDED:
            return batch
        if time.monotonic() >= deadline:
            counts = batch["request_counts"]
            raise TimeoutError(f"batch {batch['id']} still {batch['status']} after {timeout}s "
                               f"({counts['completed'] + counts['failed']}/{counts['total']} "
                               "finished)")  # fmt: skip
        await asyncio.sleep(poll_seconds)


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, *, raw: bool = False, **kwargs: Any
) -> Any:
    async with session.request(method, url, **kwargs) as reply:
        if reply.status >= 400:
            try:
                error = (await reply.json(content_type=None))["error"]
            except (ValueError, KeyError, TypeError):
                error = {"message": await reply.text()}
            raise ApiCallError(reply.status, error)
        return await reply.text() if raw else await reply.json()


def _input_position(line: dict[str, Any]) -> int:
    """A result line's place in the input: its ``id`` is ``batch_req_<batch>.<index>``."""
    _, _, index = str(line.get("id", "")).rpartition(".")
    return int(index) if index.isdigit() else 0
