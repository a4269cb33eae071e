"""The OpenAI-compatible HTTP API, route by route, on fakeredis with aiohttp's test client.

Workers are played by ``settle``/``answer_chats``, which store results the way a worker
does; the real thing runs in ``test_openai_sdk.py``.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import fakeredis
import pytest
from aiohttp.test_utils import TestClient, TestServer
from openai.types import Batch, FileObject
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response
from redis.asyncio import Redis

from contract import keys
from contract.batches import BatchStore
from contract.models import JobError, JobResult, Usage
from producer.http import liveness
from producer.http.app import make_app
from producer.http.auth import is_loopback
from producer.http.settings import ApiSettings
from producer.http.sse import split_text
from tests.conftest import eventually, report_live_worker

KEY = "sk-test-key-0123456789"
ONE, TWO = "sk-one-0123456789abcdef", "sk-two-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
QUEUE = "test:queue"


def settings(**overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {"redis_url": "redis://unused", "queue_name": QUEUE,
                              "api_keys": KEY, **overrides}  # fmt: skip
    return ApiSettings(_env_file=None, **values)


def open_app(redis: Redis, **overrides: Any) -> aiohttp.web.Application:
    """An app with no keys on a loopback address: open."""
    return make_app(settings(api_keys="", **overrides), open_without_keys=True, redis=redis)


@pytest.fixture(autouse=True)
async def a_live_worker(fake_redis: Redis) -> None:
    """The workers are played here (``settle``, ``answer_chats``): one reports itself, as a
    worker does, or serve would refuse chats nobody runs (``test_no_workers_*``)."""
    await report_live_worker(fake_redis, QUEUE)


@pytest.fixture
async def client(fake_redis: Redis) -> AsyncIterator[TestClient]:
    app = make_app(settings(), open_without_keys=False, redis=fake_redis)
    async with TestClient(TestServer(app), headers=AUTH) as test_client:
        yield test_client


def prompt(n: int, content: str | None = None) -> dict[str, Any]:
    body = {"model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": content or f"question {n}"}]}  # fmt: skip
    return {"custom_id": f"c{n}", "method": "POST", "url": "/v1/chat/completions", "body": body}


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def form(data: bytes, purpose: str = "batch", filename: str = "in.jsonl") -> aiohttp.FormData:
    sent = aiohttp.FormData()
    sent.add_field("purpose", purpose)
    sent.add_field("file", data, filename=filename, content_type="application/jsonl")
    return sent


async def upload(client: TestClient, count: int = 3) -> dict[str, Any]:
    reply = await client.post("/v1/files", data=form(jsonl([prompt(n) for n in range(count)])))
    assert reply.status == 200, await reply.text()
    return await reply.json()


async def create_batch(client: TestClient, file_id: str, **fields: Any) -> dict[str, Any]:
    body = {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
            "completion_window": "24h", **fields}  # fmt: skip
    reply = await client.post("/v1/batches", json=body)
    assert reply.status == 200, await reply.text()
    return await reply.json()


async def assert_error(
    reply: aiohttp.ClientResponse, status: int, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The reply is OpenAI's error body with this status (and param, code if given)."""
    assert reply.status == status, await reply.text()
    body = await reply.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    return error


async def written(redis: Redis) -> list[bytes]:
    """The service's keys, less the report of the worker played here (``a_live_worker``)."""
    fleet = {keys.workers_seen().encode(), keys.worker_info("test-host:1").encode()}
    return [key for key in await redis.keys("chatgptes:*") if key not in fleet]


async def nothing_enqueued(redis: Redis) -> bool:
    return await redis.zcard(QUEUE) == 0 and await redis.zcard(keys.batches_created()) == 0


async def settle(redis: Redis, batch_id: str, outcomes: dict[int, str]) -> None:
    """Stores results as a worker would: index → "succeeded", an error type or "cancelled"."""
    store = BatchStore(redis, queue_name=QUEUE, ttl_seconds=3600)
    created = await store.created_at(batch_id)
    requests = await store.requests(batch_id, sorted(outcomes), created)
    results = []
    for request in requests:
        outcome = outcomes[request.index]
        if outcome == "succeeded":
            result = JobResult.for_request(request, status="succeeded",
                                           content=f"answer to {request.custom_id}")  # fmt: skip
        else:
            status = "cancelled" if outcome == "Cancelled" else "failed"
            result = JobResult.for_request(request, status=status,
                                           error=JobError(type=outcome, message="refused"))  # fmt: skip
        results.append(result)
    await store.ledger.save_results(results)


async def answer_chats(redis: Redis, outcome: str = "succeeded", content: str = "") -> None:
    """Answers every chat completion waiting, forever (cancel the task to stop)."""
    store = BatchStore(redis, queue_name=QUEUE, ttl_seconds=3600)
    while True:
        for raw in await redis.zrange(keys.batches_created(), 0, -1):
            batch_id = raw.decode()
            if batch_id.startswith("chat_") and (await store.raw_results(batch_id, [0]))[0] is None:
                if await store.created_at(batch_id) is None:
                    continue  # answered, and being forgotten
                if outcome == "succeeded" and content:
                    created = await store.created_at(batch_id)
                    (request,) = await store.requests(batch_id, [0], created)
                    result = JobResult.for_request(request, status="succeeded", content=content)
                    await store.ledger.save_results([result])
                else:
                    await settle(redis, batch_id, {0: outcome})
        await asyncio.sleep(0.01)


# --- auth ----------------------------------------------------------------------------


async def test_a_missing_or_wrong_key_is_refused(client: TestClient) -> None:
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer sk-wrong-key-0123456789"},
                    {"Authorization": f"Basic {KEY}"}):  # fmt: skip
        reply = await client.get("/v1/batches", headers=headers)
        error = await assert_error(reply, 401, code="invalid_api_key")
        assert KEY not in error["message"]
    assert (await client.get("/v1/batches")).status == 200


async def test_an_unknown_route_needs_a_key_too(client: TestClient) -> None:
    reply = await client.get("/v1/nothing", headers={"Authorization": ""})
    await assert_error(reply, 401, code="invalid_api_key")


async def test_without_keys_only_a_loopback_server_is_open(fake_redis: Redis) -> None:
    closed = make_app(settings(api_keys=""), open_without_keys=False, redis=fake_redis)
    async with TestClient(TestServer(closed)) as test_client:
        error = await assert_error(await test_client.get("/v1/batches"), 401,
                                   code="invalid_api_key")  # fmt: skip
        assert "CHATGPTES_API_KEYS" in error["message"]
    opened = open_app(fake_redis)
    async with TestClient(TestServer(opened)) as test_client:
        assert (await test_client.get("/v1/batches")).status == 200


def test_loopback_addresses() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "10.0.0.5", "api.example.com"):
        assert not is_loopback(host), host


def test_keys_are_masked_when_described() -> None:
    described = settings(api_keys=f"{ONE}, {TWO},").describe()
    assert described["api_keys"] == "*** (2 keys)"
    assert ONE not in json.dumps(described) and KEY not in repr(settings())
    assert settings(api_keys=f" {ONE} , ,{TWO}").api_key_list() == (ONE, TWO)


# --- errors that are not a route's ----------------------------------------------------


async def test_unknown_endpoint_and_wrong_method(client: TestClient) -> None:
    error = await assert_error(await client.get("/v1/embeddings"), 404, code="unknown_url")
    assert "GET /v1/embeddings" in error["message"]
    error = await assert_error(await client.put("/v1/batches"), 405, code="method_not_allowed")
    assert "PUT" in error["message"]


async def test_bad_json_bodies(client: TestClient, fake_redis: Redis) -> None:
    for data in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        for path in ("/v1/batches", "/v1/chat/completions"):
            reply = await client.post(path, data=data,
                                      headers={"Content-Type": "application/json"})  # fmt: skip
            await assert_error(reply, 400, code="invalid_json")
    assert await nothing_enqueued(fake_redis)


async def test_a_json_body_over_the_limit_is_refused(fake_redis: Redis) -> None:
    app = open_app(fake_redis, max_prompt_chars=10)
    async with TestClient(TestServer(app)) as test_client:
        big = json.dumps({"model": "gpt-4o", "messages": [], "x": "a" * (2 << 20)}).encode()

        async def unsized() -> AsyncIterator[bytes]:  # chunked: no Content-Length to check
            for start in range(0, len(big), 1 << 16):
                yield big[start : start + (1 << 16)]

        for data in (io.BytesIO(big), unsized()):
            reply = await test_client.post("/v1/chat/completions", data=data)
            await assert_error(reply, 413, code="request_too_large")


async def test_redis_out_of_reach_is_a_503_without_a_traceback() -> None:
    down = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    app = make_app(settings(), open_without_keys=False, redis=down)
    async with TestClient(TestServer(app), headers=AUTH) as test_client:
        for path in ("/v1/batches", "/v1/files", "/v1/batches/batch_x"):
            reply = await test_client.get(path)
            error = await assert_error(reply, 503, code="service_unavailable")
            assert "Traceback" not in error["message"] and "127.0.0.1" not in error["message"]
        health = await test_client.get("/healthz", headers={"Authorization": ""})
        assert health.status == 503
    await down.aclose()


async def test_health_needs_no_key_and_tells_nothing_else(client: TestClient) -> None:
    reply = await client.get("/healthz", headers={"Authorization": ""})
    assert reply.status == 200 and await reply.json() == {"status": "ok"}


async def test_no_workers_a_chat_is_refused_at_once_and_health_says_why() -> None:
    empty = fakeredis.FakeAsyncRedis()  # no worker ever reported here
    app = open_app(empty, chat_timeout_seconds=30)
    async with TestClient(TestServer(app)) as test_client:
        started = asyncio.get_running_loop().time()
        reply = await test_client.post("/v1/chat/completions", json=CHAT)
        error = await assert_error(reply, 503, code="no_workers")
        assert asyncio.get_running_loop().time() - started < 5  # not the 30 s chat timeout
        assert reply.headers["x-should-retry"] == "false"
        assert "chatgptes worker" in error["message"] and repr(QUEUE) in error["message"]
        response = await test_client.post("/v1/responses", json={"model": "gpt-4o", "input": "hi"})
        await assert_error(response, 503, code="no_workers")
        assert await empty.zcard(keys.batches_created()) == 0  # nothing was queued for nobody
        health = await test_client.get("/healthz")
        assert health.status == 200  # serve itself works: batches are still accepted
        body = await health.json()
        assert body["status"] == "degraded"
        assert [p["code"] for p in body["problems"]] == ["no_workers"]
        batch = await create_batch(test_client, (await upload(test_client))["id"])
        assert batch["status"] in ("validating", "in_progress")  # waits for a worker
        await report_live_worker(empty, QUEUE)
        assert await (await test_client.get("/healthz")).json() == {"status": "ok"}
    await empty.aclose()


async def test_a_worker_on_another_queue_or_stopping_runs_nothing_here() -> None:
    redis = fakeredis.FakeAsyncRedis()
    await report_live_worker(redis, "other:queue", worker_id="h:1")
    await report_live_worker(redis, QUEUE, worker_id="h:2")
    await redis.hset(keys.worker_info("h:2"), "stopping", 1)  # draining after SIGTERM
    async with TestClient(TestServer(open_app(redis))) as test_client:
        reply = await test_client.post("/v1/chat/completions", json=CHAT)
        await assert_error(reply, 503, code="no_workers")
    await redis.aclose()


async def test_health_says_when_redis_refuses_writes(fake_redis: Redis, monkeypatch) -> None:
    async def full(redis: Redis) -> str:
        return "at maxmemory (100 MiB of 100 MiB): OOM"

    monkeypatch.setattr(liveness, "writes_refused", full)
    async with TestClient(TestServer(open_app(fake_redis))) as test_client:
        body = await (await test_client.get("/healthz")).json()
    assert body == {"status": "degraded", "problems": [{
        "code": "redis_refusing_writes",
        "message": "Redis refuses writes, at maxmemory (100 MiB of 100 MiB): OOM",
    }]}  # fmt: skip


# --- files ----------------------------------------------------------------------------


async def test_upload_retrieve_download_list_delete(client: TestClient) -> None:
    data = jsonl([prompt(n) for n in range(3)])
    reply = await client.post("/v1/files", data=form(data, filename="prompts.jsonl"))
    created = await reply.json()
    FileObject.model_validate(created)
    assert created["object"] == "file" and created["id"].startswith("file-")
    assert (created["bytes"], created["purpose"], created["filename"]) == (len(data), "batch",
                                                                            "prompts.jsonl")  # fmt: skip
    assert created["expires_at"] - created["created_at"] == 7 * 24 * 3600
    file_id = created["id"]
    assert await (await client.get(f"/v1/files/{file_id}")).json() == created
    assert await (await client.get(f"/v1/files/{file_id}/content")).read() == data

    reply = await client.delete(f"/v1/files/{file_id}")
    assert await reply.json() == {"id": file_id, "object": "file", "deleted": True}
    for path in (f"/v1/files/{file_id}", f"/v1/files/{file_id}/content"):
        await assert_error(await client.get(path), 404, param="file_id")
    await assert_error(await client.delete(f"/v1/files/{file_id}"), 404, param="file_id")


async def test_files_are_listed_newest_first_a_page_at_a_time(client: TestClient) -> None:
    ids = [(await upload(client, 1))["id"] for _ in range(3)]
    first = await (await client.get("/v1/files", params={"limit": "2"})).json()
    assert first["object"] == "list" and first["has_more"] is True
    assert {f["id"] for f in first["data"]} <= set(ids) and len(first["data"]) == 2
    after = first["data"][-1]["id"]
    rest = await (await client.get("/v1/files", params={"limit": "2", "after": after})).json()
    assert rest["has_more"] is False and len(rest["data"]) == 1
    assert {f["id"] for f in first["data"] + rest["data"]} == set(ids)
    ascending = await (await client.get("/v1/files", params={"order": "asc"})).json()
    assert len(ascending["data"]) == 3
    other = await (await client.get("/v1/files", params={"purpose": "fine-tune"})).json()
    assert other["data"] == []
    await assert_error(await client.get("/v1/files", params={"limit": "0"}), 400, param="limit")
    await assert_error(await client.get("/v1/files", params={"order": "up"}), 400, param="order")
    await assert_error(await client.get("/v1/files", params={"after": "file-gone"}), 400,
                       param="after")  # fmt: skip


async def test_an_upload_needs_purpose_batch_and_a_file(client: TestClient, fake_redis) -> None:
    data = jsonl([prompt(0)])
    error = await assert_error(await client.post("/v1/files", data=form(data, "fine-tune")), 400,
                               param="purpose")  # fmt: skip
    assert "'batch'" in error["message"]
    only_purpose = aiohttp.FormData({"purpose": "batch"})
    only_purpose.add_field("x", b"", filename="x")  # forces multipart
    await assert_error(await client.post("/v1/files", data=only_purpose), 400, param="x")
    no_file = aiohttp.FormData()
    no_file.add_field("purpose", "batch", content_type="text/plain")
    no_file.add_field("purpose2", b"", filename="x")
    await assert_error(await client.post("/v1/files", data=no_file), 400, param="purpose2")
    no_purpose = aiohttp.FormData()
    no_purpose.add_field("file", data, filename="in.jsonl")
    await assert_error(await client.post("/v1/files", data=no_purpose), 400, param="purpose")
    await assert_error(await client.post("/v1/files", json={"purpose": "batch"}), 400,
                       param="file")  # fmt: skip
    assert await written(fake_redis) == []


async def test_a_file_with_bad_lines_is_stored_and_its_batch_fails_listing_them(
    client: TestClient, fake_redis
) -> None:
    """OpenAI's order: the upload is kept; the batch made from it fails, line by line."""
    lines = [json.dumps(prompt(0)), "{not json", json.dumps(prompt(2)),
             json.dumps({"messages": [{"role": "robot", "content": "x"}]}),
             json.dumps(prompt(2))]  # fmt: skip
    data = "\n".join(lines).encode()
    uploaded = await (await client.post("/v1/files", data=form(data))).json()
    assert uploaded["bytes"] == len(data) and uploaded["purpose"] == "batch"
    assert await (await client.get(f"/v1/files/{uploaded['id']}/content")).read() == data
    batch = await create_batch(client, uploaded["id"])
    Batch.model_validate(batch)
    assert batch["status"] == "failed" and batch["failed_at"] is not None
    errors = batch["errors"]["data"]
    assert [(e["line"], e["code"]) for e in errors] == [
        (2, "invalid_json_line"), (4, "invalid_request"), (5, "duplicate_custom_id")]  # fmt: skip
    assert errors[1]["param"] == "messages[0].role" and "robot" in errors[1]["message"]
    assert batch["output_file_id"] is None and batch["error_file_id"] is None
    assert await fake_redis.zcard(QUEUE) == 0
    empty = await (await client.post("/v1/files", data=form(b"\n\n"))).json()
    failed = await create_batch(client, empty["id"])
    assert failed["status"] == "failed"
    assert [e["code"] for e in failed["errors"]["data"]] == ["empty_file"]


async def test_an_upload_over_the_limit_is_refused_unread(fake_redis: Redis) -> None:
    app = open_app(fake_redis, max_input_bytes=1000)
    async with TestClient(TestServer(app)) as test_client:
        data = jsonl([prompt(n) for n in range(200)])  # far over 1000 bytes + slack
        reply = await test_client.post("/v1/files", data=form(data))
        error = await assert_error(reply, 413, code="request_too_large")
        assert "CHATGPTES_MAX_INPUT_BYTES" in error["message"]
        small_over = jsonl([prompt(n) for n in range(20)])  # under the slack: read, then cut

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length at all
            boundary = b"--xyz\r\n"
            yield boundary + b'Content-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            yield (
                boundary
                + b'Content-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n'
            )
            for _ in range(100):
                yield small_over
            yield b"\r\n--xyz--\r\n"

        for body in (small_over, None):  # nothing stays staged either
            if body is not None:
                reply = await test_client.post("/v1/files", data=form(body))
            else:
                reply = await test_client.post(
                    "/v1/files", data=chunked(),
                    headers={"Content-Type": "multipart/form-data; boundary=xyz"},
                )  # fmt: skip
            await assert_error(reply, 413, code="request_too_large")
    assert await written(fake_redis) == []


async def test_expires_after_sets_the_files_lifetime(client: TestClient, fake_redis) -> None:
    sent = form(jsonl([prompt(0)]))
    sent.add_field("expires_after[anchor]", "created_at")
    sent.add_field("expires_after[seconds]", "3600")
    created = await (await client.post("/v1/files", data=sent)).json()
    assert created["expires_at"] - created["created_at"] == 3600
    assert 3590 < await fake_redis.ttl(keys.file_content(created["id"])) <= 3600
    bad = form(jsonl([prompt(0)]))
    bad.add_field("expires_after[anchor]", "created_at")
    bad.add_field("expires_after[seconds]", "60")
    await assert_error(await client.post("/v1/files", data=bad), 400, param="expires_after")


# --- batches --------------------------------------------------------------------------


async def test_a_batch_runs_an_uploaded_file(client: TestClient, fake_redis: Redis) -> None:
    file_id = (await upload(client, 3))["id"]
    batch = await create_batch(client, file_id, metadata={"job": "nightly"})
    Batch.model_validate(batch)
    assert batch["id"].startswith("batch_") and batch["object"] == "batch"
    assert (batch["status"], batch["input_file_id"], batch["endpoint"]) == (
        "in_progress", file_id, "/v1/chat/completions")  # fmt: skip
    assert batch["request_counts"] == {"total": 3, "completed": 0, "failed": 0}
    assert batch["metadata"] == {"job": "nightly"} and batch["completion_window"] == "24h"
    assert batch["expires_at"] - batch["created_at"] == 24 * 3600
    assert batch["output_file_id"] is None and batch["error_file_id"] is None
    assert await fake_redis.zcard(QUEUE) > 0
    stored = await fake_redis.hgetall(keys.batch_openai(batch["id"]))
    assert stored[b"input_file_id"] == file_id.encode()
    assert await (await client.get(f"/v1/batches/{batch['id']}")).json() == batch


async def test_bad_batch_requests_enqueue_nothing(client: TestClient, fake_redis: Redis) -> None:
    file_id = (await upload(client, 1))["id"]
    good = {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    cases = [
        ({**good, "input_file_id": "file-nothere"}, 404, "input_file_id"),
        ({**good, "input_file_id": "file-out-batch_x"}, 400, "input_file_id"),
        ({**good, "endpoint": "/v1/embeddings"}, 400, "endpoint"),
        ({**good, "completion_window": "forever"}, 400, "completion_window"),
        ({**good, "completion_window": 24}, 400, "completion_window"),
        ({**good, "metadata": {"k": 1}}, 400, "metadata"),
        ({**good, "metadata": ["k"]}, 400, "metadata"),
        ({**good, "metadata": {f"k{n}": "v" for n in range(17)}}, 400, "metadata"),
        ({**good, "colour": "red"}, 400, "colour"),
        ({k: v for k, v in good.items() if k != "input_file_id"}, 400, "input_file_id"),
        ({k: v for k, v in good.items() if k != "endpoint"}, 400, "endpoint"),
    ]
    for body, status, param in cases:
        await assert_error(await client.post("/v1/batches", json=body), status, param=param)
    assert await nothing_enqueued(fake_redis)


async def test_unknown_batches_are_not_found(client: TestClient) -> None:
    for reply in (await client.get("/v1/batches/batch_nope"),
                  await client.post("/v1/batches/batch_nope/cancel")):  # fmt: skip
        await assert_error(reply, 404, param="batch_id")


async def test_batches_are_listed_newest_first_a_page_at_a_time(client: TestClient) -> None:
    file_id = (await upload(client, 1))["id"]
    made = []
    for _ in range(3):
        made.append((await create_batch(client, file_id))["id"])
        await asyncio.sleep(0.002)  # distinct creation times
    page = await (await client.get("/v1/batches", params={"limit": "2"})).json()
    assert page["object"] == "list" and page["has_more"] is True
    assert [b["id"] for b in page["data"]] == made[::-1][:2]
    assert (page["first_id"], page["last_id"]) == (made[2], made[1])
    rest = await (await client.get("/v1/batches", params={"after": made[1]})).json()
    assert [b["id"] for b in rest["data"]] == [made[0]] and rest["has_more"] is False
    default = await (await client.get("/v1/batches")).json()
    assert len(default["data"]) == 3
    await assert_error(await client.get("/v1/batches", params={"limit": "101"}), 400,
                       param="limit")  # fmt: skip
    await assert_error(await client.get("/v1/batches", params={"after": "batch_gone"}), 400,
                       param="after")  # fmt: skip


async def test_cancel_of_a_batch_with_an_unreadable_request_answers(
    client: TestClient, fake_redis: Redis
) -> None:
    """Regression (issue 20, 1): the API's cancel of such a batch answered 500."""
    batch = await create_batch(client, (await upload(client, 3))["id"])
    batch_id = batch["id"]
    requests = keys.batch_requests(batch_id)
    stored = json.loads(await fake_redis.hget(requests, 1))
    stored["service_tier"] = "flex"  # what a newer producer writes
    await fake_redis.hset(requests, 1, json.dumps(stored))
    reply = await client.post(f"/v1/batches/{batch_id}/cancel")
    assert reply.status == 200, await reply.text()
    counts = (await reply.json())["request_counts"]
    assert counts == {"total": 3, "completed": 0, "failed": 3}


async def test_cancel_a_batch(client: TestClient, fake_redis: Redis) -> None:
    batch = await create_batch(client, (await upload(client, 3))["id"])
    reply = await client.post(f"/v1/batches/{batch['id']}/cancel")
    cancelled = await reply.json()
    assert cancelled["status"] in ("cancelling", "cancelled"), cancelled
    assert cancelled["cancelling_at"] is not None
    assert cancelled["request_counts"] == {"total": 3, "completed": 0, "failed": 3}
    assert cancelled["error_file_id"] == f"file-err-{batch['id']}"
    again = await (await client.post(f"/v1/batches/{batch['id']}/cancel")).json()
    assert again["status"] == cancelled["status"]
    reply = await client.get(f"/v1/files/file-err-{batch['id']}/content")
    lines = (await reply.text()).splitlines()
    assert len(lines) == 3
    assert {json.loads(line)["error"]["code"] for line in lines} == {"batch_cancelled"}


async def test_an_ended_batch_has_output_and_error_files(client: TestClient, fake_redis) -> None:
    batch = await create_batch(client, (await upload(client, 3))["id"])
    await settle(fake_redis, batch["id"], {0: "succeeded", 1: "ContentRefused", 2: "succeeded"})
    done = await (await client.get(f"/v1/batches/{batch['id']}")).json()
    assert done["status"] == "completed" and done["completed_at"] is not None
    assert done["finalizing_at"] == done["completed_at"]
    assert done["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
    out_id, err_id = done["output_file_id"], done["error_file_id"]
    assert (out_id, err_id) == (f"file-out-{batch['id']}", f"file-err-{batch['id']}")

    output = await (await client.get(f"/v1/files/{out_id}/content")).read()
    lines = [json.loads(line) for line in output.decode().splitlines()]
    assert [line["custom_id"] for line in lines] == ["c0", "c2"]
    for line in lines:
        assert line["response"]["status_code"] == 200 and line["error"] is None
        ChatCompletion.model_validate(line["response"]["body"])
    (error_line,) = [json.loads(x) for x in (await (await client.get(
        f"/v1/files/{err_id}/content")).text()).splitlines()]  # fmt: skip
    assert error_line["custom_id"] == "c1" and error_line["response"]["status_code"] == 400
    assert error_line["response"]["body"]["error"]["code"] == "content_policy_violation"

    described = await (await client.get(f"/v1/files/{out_id}")).json()
    FileObject.model_validate(described)
    assert (described["bytes"], described["purpose"]) == (len(output), "batch_output")
    assert done["usage"] == {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0},
                             "output_tokens": 0, "output_tokens_details": {"reasoning_tokens": 0},
                             "total_tokens": 0}  # fmt: skip
    assert done["model"] == "gpt-4o-mini"
    await assert_error(await client.post(f"/v1/batches/{batch['id']}/cancel"), 400,
                       param="batch_id", code="invalid_state")  # fmt: skip

    listed = await (await client.get("/v1/files", params={"purpose": "batch_output"})).json()
    assert {f["id"] for f in listed["data"]} == {out_id, err_id}
    everything = await (await client.get("/v1/files")).json()
    assert len(everything["data"]) == 3 and not everything["has_more"]
    reply = await client.delete(f"/v1/files/{out_id}")
    assert await reply.json() == {"id": out_id, "object": "file", "deleted": True}
    for path in (f"/v1/files/{out_id}", f"/v1/files/{out_id}/content"):
        await assert_error(await client.get(path), 404, param="file_id")
    listed = await (await client.get("/v1/files", params={"purpose": "batch_output"})).json()
    assert [f["id"] for f in listed["data"]] == [err_id]
    again = await (await client.get(f"/v1/batches/{batch['id']}")).json()
    assert again["output_file_id"] == out_id  # the batch still names it, as OpenAI's does


async def test_result_files_of_a_running_batch_do_not_exist_yet(client: TestClient) -> None:
    batch = await create_batch(client, (await upload(client, 2))["id"])
    for path in (f"/v1/files/file-out-{batch['id']}", f"/v1/files/file-err-{batch['id']}/content",
                 "/v1/files/file-out-batch_nope"):  # fmt: skip
        await assert_error(await client.get(path), 404, param="file_id")


async def test_a_file_refused_at_batch_time_makes_a_failed_batch(fake_redis: Redis) -> None:
    lenient = make_app(settings(), open_without_keys=False, redis=fake_redis)
    strict = make_app(settings(max_prompt_chars=5), open_without_keys=False, redis=fake_redis)
    async with TestClient(TestServer(lenient), headers=AUTH) as test_client:
        file_id = (await upload(test_client, 2))["id"]
    async with TestClient(TestServer(strict), headers=AUTH) as test_client:
        batch = await create_batch(test_client, file_id)
    Batch.model_validate(batch)
    assert batch["status"] == "failed" and batch["failed_at"] is not None
    assert batch["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert batch["output_file_id"] is None and batch["error_file_id"] is None
    errors = batch["errors"]["data"]
    assert [e["line"] for e in errors] == [1, 2] and errors[0]["code"] == "invalid_request"
    assert await fake_redis.zcard(QUEUE) == 0


async def test_batches_made_elsewhere_are_shown_too(client: TestClient, fake_redis) -> None:
    from producer.api import BatchQueue
    from producer.inputs import parse_prompt_lines

    queue = BatchQueue(fake_redis, settings())
    lines = parse_prompt_lines([json.dumps(prompt(0))], default_model="gpt-4o",
                               max_prompt_chars=100)  # fmt: skip
    await queue.enqueue(lines, batch_id="from-cli")
    shown = await (await client.get("/v1/batches/from-cli")).json()
    Batch.model_validate(shown)
    assert (shown["input_file_id"], shown["status"]) == ("file-in-from-cli", "in_progress")
    assert shown["model"] == "gpt-4o-mini"
    described = await (await client.get("/v1/files/file-in-from-cli")).json()
    FileObject.model_validate(described)
    content = await (await client.get("/v1/files/file-in-from-cli/content")).read()
    (line,) = map(json.loads, content.decode().splitlines())
    assert line["custom_id"] == "c0" and line["url"] == "/v1/chat/completions"
    assert line["body"]["messages"] == prompt(0)["body"]["messages"]
    assert described["bytes"] == len(content) and described["purpose"] == "batch"


# --- chat completions ------------------------------------------------------------------


CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi there"}]}


@pytest.fixture
async def chats_answered(fake_redis: Redis) -> AsyncIterator[None]:
    task = asyncio.create_task(answer_chats(fake_redis, content="Hello, how are you today?"))
    yield
    task.cancel()


async def test_a_chat_completion(client: TestClient, fake_redis, chats_answered) -> None:
    reply = await client.post("/v1/chat/completions", json=CHAT)
    assert reply.status == 200, await reply.text()
    completion = ChatCompletion.model_validate(await reply.json())
    assert completion.choices[0].message.content == "Hello, how are you today?"
    assert completion.model == "gpt-4o" and completion.object == "chat.completion"
    await asyncio.sleep(0.05)
    assert await fake_redis.keys("chatgptes:{chat_*") == []  # answered: forgotten
    listed = await (await client.get("/v1/batches")).json()
    assert listed["data"] == []


async def test_a_streamed_chat_completion(client: TestClient, chats_answered) -> None:
    for include_usage in (False, True):
        body = {**CHAT, "stream": True}
        if include_usage:
            body["stream_options"] = {"include_usage": True}
        reply = await client.post("/v1/chat/completions", json=body)
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in (await reply.text()).split("\n\n")
                  if line]  # fmt: skip
        assert events[-1] == "[DONE]"
        chunks = [ChatCompletionChunk.model_validate_json(event) for event in events[:-1]]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Hello, how are you today?"
        assert len(chunks) >= 4 and chunks[0].choices[0].delta.role == "assistant"
        finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
        assert [c.choices[0].finish_reason for c in finishing] == ["stop"]
        assert (chunks[-1].usage is not None) is include_usage


async def test_a_refused_chat_prompt_is_an_openai_error(client: TestClient, fake_redis) -> None:
    task = asyncio.create_task(answer_chats(fake_redis, outcome="ContentRefused"))
    try:
        reply = await client.post("/v1/chat/completions", json=CHAT)
        await assert_error(reply, 400, code="content_policy_violation")
    finally:
        task.cancel()


async def test_a_chat_past_its_timeout_is_cancelled(fake_redis: Redis) -> None:
    app = open_app(fake_redis, chat_timeout_seconds=0.2)
    async with TestClient(TestServer(app)) as test_client:
        reply = await test_client.post("/v1/chat/completions", json=CHAT)
        error = await assert_error(reply, 504, code="timeout")
        assert "CHATGPTES_CHAT_TIMEOUT_SECONDS" in error["message"]
    (batch_id,) = [raw.decode() for raw in await fake_redis.zrange(keys.batches_created(), 0, -1)]
    assert (await fake_redis.hget(keys.batch_meta(batch_id), "state")) in (b"cancelling",
                                                                            b"cancelled")  # fmt: skip


async def test_a_chat_whose_client_goes_away_is_cancelled(client: TestClient, fake_redis) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await client.post("/v1/chat/completions", json=CHAT,
                          timeout=aiohttp.ClientTimeout(total=0.3))  # fmt: skip

    async def cancelled() -> bool:
        ids = [raw.decode() for raw in await fake_redis.zrange(keys.batches_created(), 0, -1)]
        states = [await fake_redis.hget(keys.batch_meta(i), "state") for i in ids]
        return states in ([b"cancelling"], [b"cancelled"])

    await eventually(cancelled, what="the abandoned chat's prompt to be cancelled")


async def test_bad_chat_requests_enqueue_nothing(client: TestClient, fake_redis: Redis) -> None:
    message = [{"role": "user", "content": "x"}]
    cases = [
        ({"messages": message}, 400, "model", None),
        ({"model": "gpt-4o"}, 400, "messages", None),
        ({"model": "gpt-9", "messages": message}, 404, "model", "model_not_found"),
        ({"model": "gpt-4o", "messages": [{"role": "robot", "content": "x"}]}, 400,
         "messages[0].role", None),
        ({**CHAT, "temprature": 1}, 400, "temprature", None),
        ({**CHAT, "temperature": 5}, 400, "temperature", None),
        ({**CHAT, "tools": [{"type": "function"}]}, 400, "tools[0].function", None),
        ({**CHAT, "tools": [{"type": "web_search"}]}, 400, "tools[0].type", None),
        ({**CHAT, "stream": "yes"}, 400, "stream", "invalid_type"),
        ({**CHAT, "stream_options": {"include_usage": True}}, 400, "stream_options", None),
    ]  # fmt: skip
    for body, status, param, code in cases:
        reply = await client.post("/v1/chat/completions", json=body)
        await assert_error(reply, status, param=param, code=code)
    assert await nothing_enqueued(fake_redis)


def test_split_text_keeps_every_character() -> None:
    for text in ("", "a", "one two three four five six", "x" * 37, "a  b   c"):
        parts = split_text(text)
        assert "".join(parts) == text and len(parts) <= 4
        assert all(parts)


async def test_models_are_listed(client: TestClient) -> None:
    listed = await (await client.get("/v1/models")).json()
    names = [m["id"] for m in listed["data"]]
    assert {"gpt-4", "gpt-4o", "gpt-4o-mini", "gpt-4.1-mini", "gpt-3.5-turbo"} <= set(names)
    snapshot = await (await client.get("/v1/models/gpt-4o-2024-08-06")).json()
    assert (snapshot["object"], snapshot["root"]) == ("model", "gpt-4o")
    error = await assert_error(await client.get("/v1/models/gpt-9"), 404, param="model",
                               code="model_not_found")  # fmt: skip
    assert "CHATGPTES_MODELS" in error["message"]


async def test_model_names_are_answered_and_echoed(fake_redis: Redis, chats_answered) -> None:
    app = make_app(settings(models="house-model=gpt-4o-mini"), open_without_keys=False,
                   redis=fake_redis)  # fmt: skip
    async with TestClient(TestServer(app), headers=AUTH) as test_client:
        listed = await (await test_client.get("/v1/models")).json()
        assert {"id": "house-model", "object": "model", "created": 0, "owned_by": "chatgpt.es",
                "root": "gpt-4o-mini"} in listed["data"]  # fmt: skip
        for model in ("gpt-4o-2024-08-06", "gpt-4.1-mini", "gpt-3.5-turbo", "house-model"):
            reply = await test_client.post("/v1/chat/completions", json={**CHAT, "model": model})
            assert (await reply.json())["model"] == model
        reply = await test_client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-9"})
        error = await assert_error(reply, 404, param="model", code="model_not_found")
        assert "CHATGPTES_MODELS" in error["message"]


# --- what every response carries; bodies that are not requests --------------------------


async def test_every_response_has_a_request_id(client: TestClient, chats_answered) -> None:
    replies = [await client.get("/v1/batches"), await client.get("/v1/nothing"),
               await client.get("/v1/batches", headers={"Authorization": ""}),
               await client.post("/v1/chat/completions", json={**CHAT, "stream": True})]  # fmt: skip
    ids = [reply.headers.get("x-request-id", "") for reply in replies]
    assert all(i.startswith("req_") for i in ids) and len(set(ids)) == len(ids)


async def test_a_chat_timeout_tells_the_sdk_not_to_retry(fake_redis: Redis) -> None:
    app = open_app(fake_redis, chat_timeout_seconds=0.1)
    async with TestClient(TestServer(app)) as test_client:
        reply = await test_client.post("/v1/chat/completions", json=CHAT)
        await assert_error(reply, 504, code="timeout")
        assert reply.headers["x-should-retry"] == "false"


async def test_malformed_multipart_and_deep_json_are_400s_not_tracebacks(
    client: TestClient, fake_redis: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = [
        (b"garbage without a boundary", "multipart/form-data; boundary=xyz"),
        (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc',
         "multipart/form-data; boundary=xyz"),
        (b"--xyz\r\n\r\n\r\n--xyz--\r\n", "multipart/form-data"),
    ]  # fmt: skip
    for data, content_type in broken:
        reply = await client.post("/v1/files", data=data, headers={"Content-Type": content_type})
        await assert_error(reply, 400)
    deep = b"[" * 100_000 + b"]" * 100_000
    for path in ("/v1/chat/completions", "/v1/batches", "/v1/responses"):
        reply = await client.post(path, data=deep, headers={"Content-Type": "application/json"})
        error = await assert_error(reply, 400, code="invalid_json")
        assert "deep" in error["message"]
    assert "Traceback" not in capsys.readouterr().err
    assert await written(fake_redis) == []


async def test_a_file_is_checked_a_block_at_a_time_and_a_late_bad_line_fails_it(
    client: TestClient, fake_redis: Redis
) -> None:
    lines = [json.dumps(prompt(n)) for n in range(12_000)]
    good = await (await client.post("/v1/files", data=form("\n".join(lines).encode()))).json()
    batch = await create_batch(client, good["id"])
    assert batch["status"] == "in_progress" and batch["request_counts"]["total"] == 12_000
    lines[11_000] = "{broken"
    bad = await (await client.post("/v1/files", data=form("\n".join(lines).encode()))).json()
    failed = await create_batch(client, bad["id"])
    assert failed["status"] == "failed"
    assert [e["line"] for e in failed["errors"]["data"]] == [11_001]
    assert await fake_redis.hlen(keys.batch_requests(failed["id"])) == 0  # nothing staged stays


async def test_a_big_upload_is_stored_piece_by_piece_exactly(client: TestClient) -> None:
    data = jsonl([prompt(n, "x" * 2000) for n in range(1500)])  # ~3 MB: several pieces
    created = await (await client.post("/v1/files", data=form(data))).json()
    assert created["bytes"] == len(data)
    assert await (await client.get(f"/v1/files/{created['id']}/content")).read() == data


# --- projects ----------------------------------------------------------------------------


async def test_each_project_sees_only_its_own_files_and_batches(fake_redis: Redis) -> None:
    keys_setting = f"{KEY},team-b:sk-b-key-0123456789ab"
    app = make_app(settings(api_keys=keys_setting), open_without_keys=False, redis=fake_redis)
    b_auth = {"Authorization": "Bearer sk-b-key-0123456789ab"}
    async with TestClient(TestServer(app), headers=AUTH) as a:
        a_file = await upload(a)
        a_batch = await create_batch(a, a_file["id"])
        b_file = (await (await a.post("/v1/files", data=form(jsonl([prompt(0)])),
                                      headers=b_auth)).json())  # fmt: skip
        reply = await a.post("/v1/batches", headers=b_auth, json={
            "input_file_id": b_file["id"], "endpoint": "/v1/chat/completions",
            "completion_window": "24h"})  # fmt: skip
        b_batch = await reply.json()
        for path in (f"/v1/files/{a_file['id']}", f"/v1/files/{a_file['id']}/content",
                     f"/v1/batches/{a_batch['id']}"):  # fmt: skip
            assert (await a.get(path, headers=b_auth)).status == 404
            assert (await a.get(path)).status == 200
        await assert_error(await a.post(f"/v1/batches/{a_batch['id']}/cancel", headers=b_auth),
                           404, param="batch_id")  # fmt: skip
        await assert_error(await a.delete(f"/v1/files/{a_file['id']}", headers=b_auth), 404,
                           param="file_id")  # fmt: skip
        reply = await a.post("/v1/batches", headers=b_auth, json={
            "input_file_id": a_file["id"], "endpoint": "/v1/chat/completions",
            "completion_window": "24h"})  # fmt: skip
        await assert_error(reply, 404, param="input_file_id")
        await assert_error(await a.get(f"/v1/batches/{b_batch['id']}"), 404, param="batch_id")
        b_files = await (await a.get("/v1/files", headers=b_auth)).json()
        b_batches = await (await a.get("/v1/batches", headers=b_auth)).json()
        assert [f["id"] for f in b_files["data"]] == [b_file["id"]]
        assert [b["id"] for b in b_batches["data"]] == [b_batch["id"]]
        a_batches = await (await a.get("/v1/batches")).json()
        assert [b["id"] for b in a_batches["data"]] == [a_batch["id"]]


def test_a_project_name_is_checked_and_the_key_never_shown() -> None:
    with pytest.raises(ValueError, match="entry 2") as refused:
        settings(api_keys=f"{ONE},bad project:sk-secret-two-0123456789")
    assert "sk-secret-two" not in str(refused.value)
    assert settings(api_keys=f"a:{ONE},{TWO}").describe()["api_keys"] == "*** (2 keys)"


# --- chat: roles, structured outputs, length --------------------------------------------


async def chat_body_enqueued(redis: Redis) -> dict[str, Any]:
    (batch_id,) = [raw.decode() for raw in await redis.zrange(keys.batches_created(), 0, -1)]
    return json.loads(await redis.hget(keys.batch_requests(batch_id), "0"))


async def test_developer_messages_are_system_messages(fake_redis: Redis) -> None:
    app = open_app(fake_redis, chat_timeout_seconds=0.1)
    async with TestClient(TestServer(app)) as test_client:
        messages = [{"role": "developer", "content": "Be brief."}, *CHAT["messages"]]
        reply = await test_client.post("/v1/chat/completions", json={**CHAT, "messages": messages})
        assert reply.status == 504
    stored = await chat_body_enqueued(fake_redis)
    assert [m["role"] for m in stored["messages"]] == ["system", "user"]


async def test_json_schema_and_max_tokens_reach_the_worker(fake_redis: Redis) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "A", "schema": schema, "strict": True}}
    app = open_app(fake_redis, chat_timeout_seconds=0.1)
    async with TestClient(TestServer(app)) as test_client:
        body = {**CHAT, "response_format": fmt, "max_completion_tokens": 7}
        assert (await test_client.post("/v1/chat/completions", json=body)).status == 504
    params = (await chat_body_enqueued(fake_redis))["params"]
    assert json.loads(params["json_schema"]) == schema and params["max_tokens"] == 7


async def test_an_answer_cut_at_max_tokens_finishes_with_length(
    client: TestClient, fake_redis: Redis
) -> None:
    async def answer_cut() -> None:
        store = BatchStore(fake_redis, queue_name=QUEUE, ttl_seconds=3600)
        while True:
            for raw in await fake_redis.zrange(keys.batches_created(), 0, -1):
                batch_id = raw.decode()
                created = await store.created_at(batch_id)
                if created is not None and (await store.raw_results(batch_id, [0]))[0] is None:
                    (request,) = await store.requests(batch_id, [0], created)
                    result = JobResult.for_request(request, status="succeeded", content="a b", cut=True,
                                                   usage=Usage(completion_tokens=2))  # fmt: skip
                    await store.ledger.save_results([result])
            await asyncio.sleep(0.01)

    task = asyncio.create_task(answer_cut())
    try:
        reply = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 2})
        completion = ChatCompletion.model_validate(await reply.json())
        assert completion.choices[0].finish_reason == "length"
        assert completion.system_fingerprint and completion.service_tier == "default"
        reply = await client.post("/v1/responses", json={
            "model": "gpt-4o", "input": "Hi", "max_output_tokens": 2})  # fmt: skip
        response = Response.model_validate(await reply.json())
        assert response.status == "incomplete" and response.max_output_tokens == 2
        assert response.output_text == "a b"
    finally:
        task.cancel()


# --- the Responses API ---------------------------------------------------------------------


async def test_a_response_plain_and_streamed(
    client: TestClient, fake_redis, chats_answered
) -> None:
    body = {"model": "gpt-4o", "instructions": "Be kind.",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}]}  # fmt: skip
    reply = await client.post("/v1/responses", json=body)
    assert reply.status == 200, await reply.text()
    response = Response.model_validate(await reply.json())
    assert response.output_text == "Hello, how are you today?"
    assert (response.status, response.instructions, response.model) == (
        "completed", "Be kind.", "gpt-4o")  # fmt: skip
    reply = await client.post("/v1/responses", json={**body, "stream": True})
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    blocks = [b for b in (await reply.text()).split("\n\n") if b]
    events = [json.loads(b.split("data: ", 1)[1]) for b in blocks]
    assert all(b.startswith(f"event: {e['type']}\n") for b, e in zip(blocks, events, strict=True))
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == "Hello, how are you today?"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


async def test_bad_responses_requests_say_why(client: TestClient, fake_redis: Redis) -> None:
    cases = [
        ({"model": "gpt-4o"}, "input"),
        ({"model": "gpt-4o", "input": "Hi", "previous_response_id": "resp_1"},
         "previous_response_id"),
        ({"model": "gpt-4o", "input": [{"type": "function_call_output", "output": "x"}]},
         "input[0].call_id"),
        ({"model": "gpt-4o", "input": [{"type": "reasoning", "summary": []}]}, "input[0].type"),
        ({"model": "gpt-4o", "input": "Hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"model": "gpt-4o", "input": "Hi", "colour": 1}, "colour"),
    ]  # fmt: skip
    for body, param in cases:
        error = await assert_error(await client.post("/v1/responses", json=body), 400, param=param)
        assert error["message"]
    assert await nothing_enqueued(fake_redis)


async def test_a_batch_of_the_responses_endpoint(client: TestClient, fake_redis: Redis) -> None:
    lines = [{"custom_id": f"r{n}", "method": "POST", "url": "/v1/responses",
              "body": {"model": "gpt-4o", "input": f"question {n}",
                       "text": {"format": {"type": "json_object"}}}} for n in range(2)]  # fmt: skip
    lines.append({**lines[0], "custom_id": "bad", "body": {"model": "gpt-4o"}})
    uploaded = await (await client.post("/v1/files", data=form(jsonl(lines)))).json()
    reply = await client.post("/v1/batches", json={"input_file_id": uploaded["id"],
                              "endpoint": "/v1/responses", "completion_window": "24h"})  # fmt: skip
    failed = await reply.json()
    assert failed["status"] == "failed"
    assert [(e["line"], e["param"]) for e in failed["errors"]["data"]] == [(3, "body.input")]
    uploaded = await (await client.post("/v1/files", data=form(jsonl(lines[:2])))).json()
    reply = await client.post("/v1/batches", json={"input_file_id": uploaded["id"],
                              "endpoint": "/v1/responses", "completion_window": "24h"})  # fmt: skip
    batch = await reply.json()
    assert batch["status"] == "in_progress" and batch["endpoint"] == "/v1/responses"
    await settle(fake_redis, batch["id"], {0: "succeeded", 1: "succeeded"})
    done = await (await client.get(f"/v1/batches/{batch['id']}")).json()
    output = await (await client.get(f"/v1/files/{done['output_file_id']}/content")).text()
    bodies = [json.loads(line)["response"]["body"] for line in output.splitlines()]
    assert [Response.model_validate(b).output_text for b in bodies] == ["answer to r0",
                                                                       "answer to r1"]  # fmt: skip
