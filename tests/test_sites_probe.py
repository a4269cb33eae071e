"""`chatgptes sites probe` against running simulators, and a worker at a custom-bot widget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from simulator.local import simulator_process, wait_until

CUSTOM_BOT_WIDGET = ("--bot-id", "4367", "--type", "widget", "--post-id", "2477")


def probe(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATGPTES_")}
    env.update(settings)
    return subprocess.run(
        [sys.executable, "-m", "chatgptes.cli", "sites", "probe", *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def stats(sim: dict[str, Any]) -> dict[str, Any]:
    with urllib.request.urlopen(sim["stats_url"], timeout=5) as reply:
        return json.load(reply)  # type: ignore[no-any-return]


def test_probe_prints_the_profile_and_sends_no_prompt(tmp_path: Path) -> None:
    with simulator_process(tmp_path, *CUSTOM_BOT_WIDGET, "--markup", "data-attrs") as (sim, _):
        done = probe(sim["url"])
        assert done.returncode == 0, done.stderr
        lines = dict(line.split(None, 1) for line in done.stdout.splitlines() if line.strip())
        assert lines["chat"] == "widget, custom bot 4367"
        assert lines["post"] == "id    2477"
        assert (
            "action=wpaicg_chatbox_message bot_id=4367 chatbot_identity=custom_bot_4367"
            in (lines["form"])
        )
        assert lines["consent"] == "wpaicg_user_agree (the page's)"
        as_json = json.loads(probe(sim["url"], "--json").stdout)
        found = stats(sim)
    assert as_json["profile"]["bot_id"] == "4367" and as_json["profile"]["chat_type"] == "widget"
    assert as_json["form"] == {
        "action": "wpaicg_chatbox_message",
        "bot_id": "4367",
        "chatbot_identity": "custom_bot_4367",
        "consent_field": "wpaicg_user_agree",
        "consent_from": "page",
        "encoding": "multipart",
    }
    assert (found["requests"]["page"], found["requests"]["ajax"]) == (2, 0)


def test_probe_goes_through_the_first_configured_proxy(tmp_path: Path) -> None:
    with simulator_process(tmp_path, "--auth-proxies", "1", "--proxies", "1") as (sim, _):
        auth, plain = sim["auth_proxies"][0], sim["proxies"][0]
        done = probe(sim["url"], CHATGPTES_PROXIES=f"{auth},{plain}")
        assert done.returncode == 0, done.stderr
        assert "(via http://user:***@127.0.0.1:" in done.stdout and "secret" not in done.stdout
        wrong = auth.replace(":secret@", ":hunter2@")
        refused = probe(sim["url"], CHATGPTES_PROXIES=f"{wrong},{plain}")
        identities = stats(sim)["identities"]
    assert identities["authproxy1"]["page"] == 1 and "direct" not in identities
    assert "proxy1" not in identities  # only the first proxy is used
    assert refused.returncode == 1 and "ProxyFault" in refused.stderr
    assert "hunter2" not in refused.stderr + refused.stdout


def test_probe_names_what_a_page_without_a_chat_lacks(tmp_path: Path) -> None:
    with simulator_process(tmp_path) as (sim, _):
        done = probe(sim["url"] + "/__sim/stats")
    assert done.returncode == 1
    assert "no chat on" in done.stderr
    assert "has no nonce and no post id and no chat element" in done.stderr


def test_probe_refuses_what_is_not_a_site_url() -> None:
    done = probe("ftp://chatgpt.es")
    assert done.returncode == 2 and "URL: not a site URL" in done.stderr


def test_probe_uses_the_site_s_settings_when_the_url_is_a_fleet_site(tmp_path: Path) -> None:
    with simulator_process(tmp_path, "--consent-field", "theme_renamed_agree") as (sim, _):
        path = tmp_path / "sites.toml"
        path.write_text('[sites.es]\nconsent_field = "theme_renamed_agree"\n')
        done = probe(
            sim["url"], "--json", CHATGPTES_SITES=f"es={sim['url']}", CHATGPTES_SITES_FILE=str(path)
        )
    assert done.returncode == 0, done.stderr
    form = json.loads(done.stdout)["form"]
    assert (form["consent_field"], form["consent_from"]) == ("theme_renamed_agree", "settings")


@pytest.mark.e2e
def test_a_worker_at_a_custom_bot_widget_sends_its_own_form(fleet, tmp_path: Path) -> None:
    """The site answers every prompt and never sees a malformed form."""
    fleet.start_simulator(*CUSTOM_BOT_WIDGET, "--markup", "random", "--latency", "fixed:5")
    fleet.start_workers(1, proxy_rate_per_second=0)
    path = tmp_path / "prompts.jsonl"
    count = 60
    lines = [{"custom_id": f"q{n}", "messages": [{"role": "user", "content": f"q {n}"}]}
             for n in range(count)]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    enqueued = fleet.cli("enqueue", str(path), "--json")
    assert enqueued.returncode == 0, enqueued.stderr
    batch_id = json.loads(enqueued.stdout)["batch_id"]
    waited = fleet.cli("wait", batch_id, "--timeout", "120")
    assert waited.returncode == 0, waited.stderr + fleet.worker_logs()[-3000:]
    out = fleet.cli("results", batch_id).stdout.splitlines()
    results = [json.loads(line) for line in out]
    assert [r["status"] for r in results] == ["succeeded"] * count
    assert all(r["content"].endswith(f"q {n}") for n, r in enumerate(results))
    found = wait_until(lambda: fleet.sim_stats(), timeout=5, what="the site's stats")
    assert found["replies"]["success"] == count
    assert found["replies"]["form_mismatch"] == 0 and found["mismatches"] == {}
    assert found["replies"]["consent_missing"] == 0
