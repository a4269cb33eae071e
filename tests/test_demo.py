"""``chatgptes demo``: its choice of Redis, its sample batch, its two sites (one fleet over
both), and the whole story end to end."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis import Redis, ResponseError

from chatgptes import demo, demo_sites, local_fleet
from contract.sites import load_sites
from simulator.local import free_port

ROOT = Path(__file__).resolve().parent.parent
DEMO_TIMEOUT_SECONDS = 180


@pytest.fixture
def cleanup() -> Iterator[local_fleet.Cleanup]:
    stack = local_fleet.Cleanup(say=demo.say)
    yield stack
    stack.close()


def test_falls_back_to_embedded_fakeredis_and_names_it(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    cleanup: local_fleet.Cleanup,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CHATGPTES_REDIS_URL", f"redis://:s3cret@127.0.0.1:{free_port()}/0")
    monkeypatch.setattr(demo.shutil, "which", lambda name, *args, **kwargs: None)

    server = demo.start_redis(cleanup, tmp_path)

    assert "embedded fakeredis server" in server.label
    assert "(redis-server not found)" in server.label
    with Redis.from_url(server.url) as client:
        assert client.info("server")["redis_version"]  # arq asks for it when a worker starts
        with pytest.raises(ResponseError):
            client.execute_command("NO-SUCH-COMMAND")
        assert client.ping()  # an error reply does not cost the connection
    out = capsys.readouterr().out
    assert "not reachable" in out
    assert "s3cret" not in out


def test_starts_its_own_redis_server_when_none_is_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cleanup: local_fleet.Cleanup
) -> None:
    if demo.shutil.which("redis-server") is None:
        pytest.skip("no redis-server on PATH")
    monkeypatch.delenv("CHATGPTES_REDIS_URL", raising=False)

    server = demo.start_redis(cleanup, tmp_path)

    assert server.label.startswith("a redis-server of its own at redis://127.0.0.1:")
    assert local_fleet.redis_problem(server.url) is None
    cleanup.close()
    assert local_fleet.redis_problem(server.url, timeout=0.2) is not None


def test_sample_prompts_come_from_the_examples_then_are_generated() -> None:
    shipped = demo.sample_prompts(12)
    assert [line.custom_id for line in shipped][:2] == ["q01", "q02"]

    generated = demo.sample_prompts(60)
    assert len(generated) == 60
    assert len({line.custom_id for line in generated}) == 60
    roles = {message.role for line in generated for message in line.messages}
    assert roles == {"system", "user", "assistant"}


def test_the_two_sites_make_one_fleet_each_with_its_own_proxies(tmp_path: Path) -> None:
    def running(name: str, port: int, language: str) -> demo_sites.RunningSite:
        sim = {"url": f"http://127.0.0.1:{port}", "chat": {"language": language},
               "proxies": [f"http://127.0.0.1:{port + n}" for n in (1, 2, 3)]}  # fmt: skip
        return demo_sites.RunningSite(name, "a site", sim)

    sites = [running("es", 9000, "de"), running("bot", 9100, "en")]

    settings = demo_sites.fleet_settings(tmp_path, sites)

    assert settings["sites"] == "es=http://127.0.0.1:9000,bot=http://127.0.0.1:9100"
    fleet = load_sites(settings["sites"], Path(settings["sites_file"]), "")
    assert fleet.names == ("es", "bot")
    assert (fleet["bot"].language, fleet["es"].language) == ("en", "de")
    # A simulator's proxies reach only its own site: each site is given its own.
    bot_proxies = fleet["bot"].proxies_file
    assert bot_proxies is not None and bot_proxies.read_text().split() == sites[1].sim["proxies"]
    assert fleet["es"].proxies_file != bot_proxies


def test_a_custom_bot_site_of_its_own_beside_the_shortcode_site() -> None:
    es, bot = demo_sites.SITES
    assert (es.name, es.options) == ("es", ())  # chatgpt.es's shortcode chat, as ever
    assert bot.name == demo_sites.PINNED_SITE
    options = dict(zip(bot.options[::2], bot.options[1::2], strict=True))
    assert options["--bot-id"] != "0" and options["--type"] == "widget"
    assert options["--post-id"] != "106" and options["--language"] != "de"  # not es's own


def _with_db(url: str, db: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def run_demo_process(tmp_path: Path, redis_url: str, *, via_api: bool = False) -> tuple[int, str]:
    """Runs the demo in a child process; (exit code, output). Stopped whatever happens.
    Its temporary files go to ``tmp_path/tmp``."""
    (tmp_path / "tmp").mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path / "tmp"),
        "CHATGPTES_REDIS_URL": redis_url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    code = ("from chatgptes.demo import run_demo; "
            f"raise SystemExit(run_demo(prompts=12, workers=2, via_api={via_api}))")  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = process.communicate(timeout=DEMO_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # the demo stops its workers and simulator on SIGTERM
        try:
            out, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        pytest.fail(f"demo did not finish in {DEMO_TIMEOUT_SECONDS}s:\n{out}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, out


def assert_top_frame(out: str) -> None:
    """The fleet as `chatgptes top` shows it: the batch, both workers, each site's identities."""
    assert "chatgptes top" in out and "12/12" in out, out
    assert "workers: 2 alive" in out and re.search(r"identities: the worst \d+ of 6", out), out
    assert re.search(r"\bes/127\.0\.0\.1:\d+", out) and re.search(r"\bbot/127\.0\.0\.1:\d+", out)


def assert_both_sites_answered(out: str, *, pinned: bool) -> dict[str, int]:
    """The story ends with what each site answered; each result line names its site."""
    story = [line for line in out.splitlines() if line.startswith("» ")]
    last = next(line for line in reversed(story) if not line.startswith("» stopped"))
    found = re.fullmatch(
        r"» answered by site, as `chatgptes status` counts them: es (\d+), bot (\d+) of batch "
        r"\w+ \(any site\)(; bot 6 of batch demo_\w+ \(pinned to bot\))?",
        last,
    )
    assert found and bool(found.group(3)) == pinned, out
    answered = {"es": int(found.group(1)), "bot": int(found.group(2))}
    assert sum(answered.values()) == 12 and min(answered.values()) > 0, answered
    sites = set(re.findall(r"^\W*q\d\d\W+succeeded\W+(es|bot)\W", out, re.MULTILINE))
    assert sites == {"es", "bot"}, out
    return answered


@pytest.mark.e2e
def test_demo_runs_the_whole_story(tmp_path: Path, redis_server: str) -> None:
    redis_url = _with_db(redis_server, 5)
    code, out = run_demo_process(tmp_path, redis_url)
    assert code == 0, out
    assert f"using your Redis at {redis_url}" in out
    assert "batch completed: 12 succeeded, 0 failed" in out
    assert_top_frame(out)
    assert "q01" in out and "Echo: " in out
    answered = assert_both_sites_answered(out, pinned=True)
    assert "6 prompts pinned to bot (as `enqueue --site bot` pins them), completed: 6 " \
        "succeeded; es got none of them" in out, out  # fmt: skip
    for site in ("es", "bot"):
        handshakes = re.search(rf"simulator {site}: (\d+) page GETs .*? and (\d+) ajax POSTs; "
                               r"(\d+) injected 5xx retried; 0 forms refused", out)  # fmt: skip
        assert handshakes, out
        pages, posts, faults = map(int, handshakes.groups())
        # A page GET per proxy session (3 a site), plus one more per injected fault that hit one.
        assert pages <= 3 + faults and posts >= answered[site], out
    assert "stopped simulator-es, simulator-bot, worker-1, worker-2" in out
    assert list((tmp_path / "tmp").iterdir()) == [], "the demo left its work directory behind"


@pytest.mark.e2e
def test_demo_via_the_api_runs_the_batch_as_openai_code_does(
    tmp_path: Path, redis_server: str
) -> None:
    code, out = run_demo_process(tmp_path, _with_db(redis_server, 6), via_api=True)
    assert code == 0, out
    assert "OpenAI-compatible API (chatgptes serve) at http://127.0.0.1:" in out
    assert "batch ended: 12 answered, 0 in the error file" in out
    assert "q12" in out and "200" in out
    assert_top_frame(out)
    assert_both_sites_answered(out, pinned=False)
    assert "stopped simulator-es, simulator-bot, worker-1, worker-2, api" in out
