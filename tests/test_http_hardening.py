"""What an adversarial pass over ``serve`` found: inputs that were 500s, a listing cursor that
told whether another project's batch exists, and error bodies that echoed input raw."""

from __future__ import annotations

import json

from click.testing import CliRunner

from producer.http import records
from tests.test_console import enqueue
from tests.test_http_api import AUTH, assert_error, make_app, settings

BOUNDARY = "XyZ"


def form(*parts: str) -> tuple[bytes, dict[str, str]]:
    body = "".join(f"--{BOUNDARY}\r\n{part}\r\n" for part in parts) + f"--{BOUNDARY}--\r\n"
    return body.encode(), {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}", **AUTH}


async def test_a_part_header_over_8_kib_is_a_400(fake_redis) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    app = make_app(settings(), open_without_keys=False, redis=fake_redis)
    async with TestClient(TestServer(app)) as client:
        long_header = 'Content-Disposition: form-data; name="purpose"\r\nX-Long: ' + "a" * 9000
        body, headers = form(f"{long_header}\r\n\r\nbatch")
        reply = await client.post("/v1/files", data=body, headers=headers)
        error = await assert_error(reply, 400, code="invalid_multipart")
        assert "8 KiB" in error["message"] and "aaaa" not in error["message"]
        name = "n" * 100_000
        body, headers = form('Content-Disposition: form-data; name="purpose"\r\n\r\nbatch',
                             f'Content-Disposition: form-data; name="file"; filename="{name}"'
                             "\r\n\r\n{}")  # fmt: skip
        reply = await client.post("/v1/files", data=body, headers=headers)
        await assert_error(reply, 400, code="invalid_multipart")


async def test_a_huge_completion_window_is_a_400_and_not_echoed_whole(fake_redis) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    app = make_app(settings(), open_without_keys=False, redis=fake_redis)
    async with TestClient(TestServer(app)) as client:
        for window in ("9999999999999h", "9" * 5000 + "s"):
            reply = await client.post("/v1/batches", headers=AUTH, json={
                "input_file_id": "file-x", "endpoint": "/v1/chat/completions",
                "completion_window": window})  # fmt: skip
            error = await assert_error(reply, 400, param="completion_window")
            assert len(error["message"]) < 200


def test_the_clis_completion_window_says_what_is_wrong(tmp_path) -> None:
    from chatgptes.cli import main

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    result = CliRunner().invoke(main, ["enqueue", str(prompts), "--completion-window",
                                       "9999999999999h"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "between 1 minute and 30 days" in result.output


async def test_a_cursor_of_another_projects_batch_answers_as_an_unknown_one(fake_redis) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    await enqueue(fake_redis, "b_default", ["a"])
    await enqueue(fake_redis, "batch_teamb", ["b"])
    await records.save_extras(fake_redis, "batch_teamb", {"kind": "batch", "project": "team-b"},
                              3600)  # fmt: skip
    await records.register(fake_redis, "team-b", "batch_teamb")
    app = make_app(settings(api_keys=f"{AUTH['Authorization'][7:]},team-b:sk-b-0123456789abcdef"),
                   open_without_keys=False, redis=fake_redis)  # fmt: skip
    async with TestClient(TestServer(app)) as client:
        other = await client.get("/v1/batches", params={"after": "batch_teamb"}, headers=AUTH)
        unknown = await client.get("/v1/batches", params={"after": "batch_never"}, headers=AUTH)
        first = await assert_error(other, 400, param="after")
        second = await assert_error(unknown, 400, param="after")
        assert first["message"].replace("batch_teamb", "X") == second["message"].replace(
            "batch_never", "X"
        )
        mine = await client.get("/v1/batches", params={"after": "b_default"}, headers=AUTH)
        assert mine.status == 200


async def test_error_bodies_escape_what_they_quote_and_say_nosniff(fake_redis) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    app = make_app(settings(), open_without_keys=False, redis=fake_redis)
    async with TestClient(TestServer(app)) as client:
        reply = await client.get("/v1/<script>alert(1)</script>", headers=AUTH)
        text = await reply.text()
        assert reply.status == 404 and reply.headers["X-Content-Type-Options"] == "nosniff"
        assert "<script>" not in text and "\\u003cscript\\u003e" in text
        assert "<script>" in (await reply.json())["error"]["message"]  # the same JSON, parsed
        ok = await client.get("/v1/models", headers=AUTH)
        assert ok.headers["X-Content-Type-Options"] == "nosniff"
