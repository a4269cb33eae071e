"""Two sites in one fleet, with real processes: a shortcode site and a custom-bot widget
site with its own post id, each a simulator of its own, served by the same two workers.

- unpinned prompts go to both, each answers a fair share, and each gets its own form;
- a batch pinned to one site sends nothing to the other;
- the custom-bot site goes down in the middle of a batch: every prompt comes back right,
  from the other site, and the fleet says why the first is down.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from simulator import local
from tests.chaos import assert_one_result_per_prompt, done, enqueue, results, status
from tests.conftest import Fleet

pytestmark = pytest.mark.e2e
SETTINGS = {"proxy_rate_per_second": 0, "proxy_max_inflight": 8, "fleet_max_inflight": 16}


def start_site(fleet: Fleet, tmp_path: Path, name: str, *options: str) -> tuple[dict, object]:
    workdir = tmp_path / name
    workdir.mkdir()
    return fleet._stack.enter_context(
        local.simulator_process(workdir, "--latency", "fixed:30", *options)
    )


def stats(info: dict) -> dict:
    with urllib.request.urlopen(info["stats_url"], timeout=5) as reply:
        return json.load(reply)


@pytest.fixture
def two_sites(fleet: Fleet, tmp_path: Path) -> dict[str, dict]:
    es, _ = start_site(fleet, tmp_path, "es")
    bot, process = start_site(fleet, tmp_path, "bot", "--bot-id", "12", "--type", "widget",
                              "--post-id", "207", "--language", "en")  # fmt: skip
    sites = {"es": es, "bot": {**bot, "process": process}}
    fleet.start_workers(2, sites=f"es={es['url']},bot={bot['url']}", **SETTINGS)
    return sites


def cli_env(sites: dict[str, dict]) -> dict[str, str]:
    return {"sites": f"es={sites['es']['url']},bot={sites['bot']['url']}"}


def answered_by_site(fleet: Fleet, sites: dict[str, dict], path: Path, *options: str) -> dict:
    """Enqueues ``path`` (with ``options``), waits for the batch, and says which site
    answered how many of its prompts."""
    enqueued = fleet.cli("enqueue", str(path), *options, "--json", **cli_env(sites))
    assert enqueued.returncode == 0, enqueued.stderr
    batch_id = json.loads(enqueued.stdout)["batch_id"]
    final = local.wait_until(done(fleet, batch_id), timeout=60, what="the batch done", every=0.5)
    return final["answered_by_site"]


def test_unpinned_prompts_go_to_both_sites_each_with_its_own_form(
    fleet: Fleet, tmp_path: Path, two_sites: dict[str, dict]
) -> None:
    batch_id = enqueue(fleet, tmp_path, 600)
    final = local.wait_until(done(fleet, batch_id), timeout=120, what="600 done", every=0.5)
    assert (final["succeeded"], final["failed"]) == (600, 0)
    found = results(fleet, batch_id)
    assert_one_result_per_prompt(found, 600)
    by_site = {site: sum(1 for r in found if r.get("site") == site) for site in ("es", "bot")}
    assert sum(by_site.values()) == 600
    assert all(150 <= count <= 450 for count in by_site.values()), by_site
    assert final["answered_by_site"] == by_site
    for name, info in two_sites.items():
        site = stats(info)
        assert site["replies"]["form_mismatch"] == 0, (name, site["mismatches"])
        assert site["replies"]["success"] == by_site[name]


def test_a_pinned_batch_sends_nothing_to_the_other_site(
    fleet: Fleet, tmp_path: Path, two_sites: dict[str, dict]
) -> None:
    path = tmp_path / "pinned.jsonl"
    path.write_text("".join(
        json.dumps({"custom_id": f"q{n}", "messages": [{"role": "user", "content": f"p {n}"}]})
        + "\n" for n in range(80)
    ))  # fmt: skip
    assert answered_by_site(fleet, two_sites, path, "--site", "bot") == {"bot": 80}
    assert stats(two_sites["es"])["requests"]["ajax"] == 0
    refused = fleet.cli("enqueue", str(path), "--site", "fr", **cli_env(two_sites))
    assert refused.returncode == 2 and "no site 'fr': the fleet's sites are es, bot" in (
        refused.stderr
    )
    # The same pin, said by each line of the file ("site" on a native line).
    lines = tmp_path / "lines.jsonl"
    lines.write_text("".join(
        json.dumps({"custom_id": f"q{n}", "site": "bot",
                    "messages": [{"role": "user", "content": f"p {n}"}]}) + "\n"
        for n in range(40)
    ))  # fmt: skip
    assert answered_by_site(fleet, two_sites, lines) == {"bot": 40}
    assert stats(two_sites["es"])["requests"]["ajax"] == 0
    clash = fleet.cli("enqueue", str(lines), "--site", "es", **cli_env(two_sites))
    assert clash.returncode == 2, clash.stderr
    assert "line 1: site 'bot', but the batch is pinned to 'es'" in clash.stderr


def test_a_site_that_goes_down_mid_batch_leaves_its_prompts_to_the_other(
    fleet: Fleet, tmp_path: Path, two_sites: dict[str, dict]
) -> None:
    batch_id = enqueue(fleet, tmp_path, 600)
    local.wait_until(lambda: status(fleet, batch_id)["succeeded"] >= 150, timeout=60,
                     what="150 done")  # fmt: skip
    local.stop_process(two_sites["bot"]["process"], grace=0.1)  # the custom-bot site is gone
    final = local.wait_until(done(fleet, batch_id), timeout=180, what="600 done", every=0.5)
    assert (final["succeeded"], final["failed"]) == (600, 0)
    assert_one_result_per_prompt(results(fleet, batch_id), 600)
    # The site is marked down once it failed twice through every identity it has: with one
    # identity (no proxies here), a second incident comes after that identity's cooldown,
    # which a fast batch may end before. Prompts pinned to it keep trying it until then.
    path = tmp_path / "pinned.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "still there?"}]}) + "\n")
    pinned = fleet.cli("enqueue", str(path), "--site", "bot", **cli_env(two_sites))
    assert pinned.returncode == 0, pinned.stderr

    def sites_say_bot_is_down() -> str | None:
        shown = fleet.cli("sites", **cli_env(two_sites))
        assert shown.returncode == 0, shown.stderr
        says = "bot down" in shown.stdout or "bot coming back" in shown.stdout
        return shown.stdout if says else None

    shown = local.wait_until(sites_say_bot_is_down, timeout=90, what="bot marked down", every=1)
    assert "es up" in shown
    assert fleet.cli("cancel", pinned.stdout.strip(), **cli_env(two_sites)).returncode == 0
