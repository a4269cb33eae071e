"""No secret, nor any piece of one, reaches any output: every command, a worker, serve.

The secrets hold every character a URL parser splits on (``# , @ : /``) and spaces,
written percent-encoded, in each form a user has: a Redis password beside a user name,
a Redis user name that logs in alone, a proxy password, a proxy token given as the user
alone. Every stdout, stderr and log is searched for any 4 characters of any of them,
raw or encoded. The Redis is a redis-server of the test's own (``requirepass`` and ACL
users); the proxies are the simulator's: one demanding Basic auth, one taking any user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import redis

from simulator import local
from tests.private_redis import redis_with_password

pytestmark = pytest.mark.e2e

REDIS_USER = "ops-queue"
REDIS_PASSWORD = "Rz#9q, W@k:J/ vX"
REDIS_TOKEN = "Tk#7m,Q@p:Y/nB"  # a Redis user name that logs in alone (no spaces in those)
PROXY_USER = "proxyuser"
PROXY_PASSWORD = "Px#4g, H@d:L/ wC"
PROXY_TOKEN = "Gt#2s,F@r:M/ bN"
SECRETS = (REDIS_PASSWORD, REDIS_TOKEN, PROXY_PASSWORD, PROXY_TOKEN)
PROMPTS = 12


def fragments_of(secrets: tuple[str, ...], size: int = 4) -> set[str]:
    """Every run of ``size`` characters of each secret, as written and percent-encoded."""
    forms = [form for secret in secrets for form in (secret, quote(secret, safe=""))]
    return {form[i : i + size] for form in forms for i in range(len(form) - size + 1)}


FRAGMENTS = fragments_of(SECRETS)


def encoded(text: str) -> str:
    return quote(text, safe="")


@dataclass
class Outputs:
    """Everything the processes printed, by where it came from."""

    texts: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def leaks(self) -> list[tuple[str, list[str]]]:
        found = [(where, sorted(f for f in FRAGMENTS if f in text)) for where, text in self.texts]
        return [(where, pieces) for where, pieces in found if pieces]


@dataclass
class World:
    tmp: Path
    redis_port: int
    sim: dict
    auth_proxy_port: int
    plain_proxy_port: int
    outputs: Outputs = field(default_factory=Outputs)

    def redis_url(self, form: str) -> str:
        if form == "user:password":
            credentials = f"{REDIS_USER}:{encoded(REDIS_PASSWORD)}"
        else:  # the user name alone
            credentials = encoded(REDIS_TOKEN)
        return f"redis://{credentials}@127.0.0.1:{self.redis_port}/0"

    def env(self, form: str, **settings: str) -> dict[str, str]:
        proxies_file = self.tmp / "proxies.txt"
        proxies_file.write_text(
            "# the gateway: its token is the user name, alone\n"
            f"http://{encoded(PROXY_TOKEN)}@127.0.0.1:{self.plain_proxy_port}  max_inflight=2  #EU\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATGPTES_")}
        env.update({
            "CHATGPTES_REDIS_URL": self.redis_url(form),
            "CHATGPTES_QUEUE_NAME": "secrets:queue",
            "CHATGPTES_UPSTREAM_URL": self.sim["url"],
            "CHATGPTES_PROXIES": f"http://{PROXY_USER}:{encoded(PROXY_PASSWORD)}"
                                 f"@127.0.0.1:{self.auth_proxy_port}",
            "CHATGPTES_PROXIES_FILE": str(proxies_file),
            "CHATGPTES_PROXY_RATE_PER_SECOND": "0",
            "CHATGPTES_HEARTBEAT_SECONDS": "1",
            "CHATGPTES_LOG_LEVEL": "DEBUG",
        })  # fmt: skip
        env.update({f"CHATGPTES_{k.upper()}": v for k, v in settings.items()})
        return env

    def run(self, env: dict[str, str], *args: str, code: int = 0) -> subprocess.CompletedProcess:
        ran = subprocess.run([sys.executable, "-m", "chatgptes.cli", *args], env=env,
                             cwd=self.tmp, capture_output=True, text=True, timeout=120)  # fmt: skip
        self.outputs.add(f"{' '.join(args)}: stdout", ran.stdout)
        self.outputs.add(f"{' '.join(args)}: stderr", ran.stderr)
        assert ran.returncode == code, (args, ran.returncode, ran.stderr[-3000:])
        return ran


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("secrets")
    credentials = f"{PROXY_USER}:{PROXY_PASSWORD}"
    with (
        redis_with_password(tmp, REDIS_PASSWORD, user=REDIS_USER, token=REDIS_TOKEN) as port,
        local.simulator_process(
            tmp, "--proxies", "1", "--auth-proxies", "1", "--proxy-credentials", credentials
        ) as (sim, _),  # fmt: skip
    ):
        yield World(
            tmp=tmp,
            redis_port=port,
            sim=sim,
            auth_proxy_port=urlsplit(sim["auth_proxies"][0]).port or 0,
            plain_proxy_port=urlsplit(sim["proxies"][0]).port or 0,
        )


def prompts_file(tmp: Path) -> Path:
    path = tmp / "prompts.jsonl"
    path.write_text("".join(
        json.dumps({"custom_id": f"q{n}", "messages": [{"role": "user", "content": f"Hi {n}"}]})
        + "\n" for n in range(PROMPTS)
    ))  # fmt: skip
    return path


def flush(url: str) -> None:
    with redis.Redis.from_url(url) as client:
        client.flushdb()


def sim_stats(world: World) -> dict:
    with urllib.request.urlopen(world.sim["stats_url"], timeout=5) as reply:
        return json.load(reply)


def serve_briefly(world: World, env: dict[str, str]) -> None:
    """``chatgptes serve`` started, asked for its health and its batches, stopped."""
    port = local.free_port()
    log = world.tmp / f"serve-{port}.log"
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False

    argv = [sys.executable, "-m", "chatgptes.cli", "serve", "--port", str(port)]
    with local.running(argv, log=log, env={**env, "CHATGPTES_LOG_FORMAT": "json"}):
        local.wait_until(healthy, timeout=30, what="chatgptes serve to answer /healthz")
        with urllib.request.urlopen(f"{base}/v1/batches", timeout=10) as reply:
            world.outputs.add("serve: GET /v1/batches", reply.read().decode())
    world.outputs.add("serve log", log.read_text())


@pytest.mark.parametrize("form", ["user:password", "user alone"])
def test_every_command_with_secrets_prints_no_piece_of_them(world: World, form: str) -> None:
    env = world.env(form)
    flush(world.redis_url(form))
    before = sim_stats(world)["identities"]
    shown = world.run(env, "config").stdout
    assert f"CHATGPTES_PROXIES=http://{PROXY_USER}:***@127.0.0.1:" in shown
    assert "CHATGPTES_REDIS_URL=redis://" in shown and "***@127.0.0.1:" in shown
    world.run(env, "enqueue", str(prompts_file(world.tmp)), "--batch-id", "sec")
    log = world.tmp / f"worker-{form.replace(' ', '-').replace(':', '-')}.log"
    worker_env = {**env, "CHATGPTES_LOG_FORMAT": "console"}
    with local.running([sys.executable, "-m", "chatgptes.cli", "worker"], log=log, env=worker_env):
        world.run(env, "wait", "sec", "--timeout", "90")
        world.run(env, "workers", "--check")
        for command in (("workers",), ("batches",), ("top", "--once"), ("status", "sec"),
                        ("status", "sec", "--json"), ("results", "sec"), ("job", "sec.0"),
                        ("job", "sec.0", "--json"), ("retry", "sec"), ("cancel", "sec")):  # fmt: skip
            world.run(env, *command)
    world.outputs.add(f"worker log ({form})", log.read_text())
    assert "worker.started" in log.read_text()
    serve_briefly(world, env)

    status = json.loads(world.run(env, "status", "sec", "--json").stdout)
    assert status["succeeded"] == PROMPTS, status
    # The credentials reached the proxies decoded: both served, none was refused.
    after = sim_stats(world)["identities"]
    for proxy in ("authproxy1", "proxy1"):
        served = after.get(proxy, {}).get("ajax", 0) - before.get(proxy, {}).get("ajax", 0)
        assert served > 0, (proxy, after)
    assert after.get("authproxy1", {}).get("auth_required", 0) == 0, after
    assert world.outputs.leaks() == []


def test_refused_secrets_are_named_by_place_and_never_quoted(world: World) -> None:
    env = world.env("user:password")
    raw_redis = f"redis://{REDIS_USER}:{REDIS_PASSWORD}@127.0.0.1:{world.redis_port}/0"
    said = world.run({**env, "CHATGPTES_REDIS_URL": raw_redis}, "status", "sec", code=2).stderr
    assert "CHATGPTES_REDIS_URL: the Redis URL's user or password holds a character" in said
    raw_proxy = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{world.auth_proxy_port}"
    said = world.run({**env, "CHATGPTES_PROXIES": raw_proxy}, "worker", "--burst", code=2).stderr
    assert "proxy 1 in CHATGPTES_PROXIES:" in said
    raw_file = world.tmp / "raw-proxies.txt"
    raw_file.write_text(f"\nhttp://{PROXY_TOKEN}@127.0.0.1:{world.plain_proxy_port}\n")
    said = world.run({**env, "CHATGPTES_PROXIES": "", "CHATGPTES_PROXIES_FILE": str(raw_file)},
                     "worker", "--burst", code=2).stderr  # fmt: skip
    assert f"line 2 of {raw_file}:" in said
    closed = world.redis_url("user:password").replace(str(world.redis_port), str(local.free_port()))
    for command in (("enqueue", str(prompts_file(world.tmp))), ("status", "sec"), ("worker",)):
        unreachable = {**env, "CHATGPTES_REDIS_URL": closed,
                       "CHATGPTES_REDIS_STARTUP_WAIT_SECONDS": "0"}  # fmt: skip
        said = world.run(unreachable, *command, code=1).stderr
        assert f"error: Redis at redis://{REDIS_USER}:***@127.0.0.1:" in said
        assert "cannot be reached" in said
    wrong = world.redis_url("user alone").replace(encoded(REDIS_TOKEN), encoded(REDIS_TOKEN[:-1]))
    said = world.run({**env, "CHATGPTES_REDIS_URL": wrong}, "status", "sec", code=1).stderr
    assert "error: Redis at redis://***@127.0.0.1:" in said and "refused the login" in said
    assert world.outputs.leaks() == []
