"""The seeded fault campaign (``tests/campaign``) as part of ``make chaos``: three seeds of
about a minute of faults each, and every seed that once failed, kept as a regression test.

``make campaign SEED=… MINUTES=…`` runs it longer, seed after seed.
"""

from __future__ import annotations

import shutil

import pytest

from tests.campaign.checker import Checker, tag_of
from tests.campaign.fleet import Fleet, Slot
from tests.campaign.nemesis import WEIGHTS, Fault, schedule
from tests.campaign.runner import run
from tests.campaign.workload import Workload

pytestmark = pytest.mark.chaos

SEEDS = (101, 202, 303)
# Seeds that found a fault once (kept: each must pass from now on).
REGRESSIONS: tuple[int, ...] = (
    12,  # a request written as its worker froze reached the site 15 ms after: it was out
    376,  # the site reset a frozen worker's request; libcurl resent it on the thaw
    1005,  # a worker restarted while Redis restarted exited 1 at arq's first command
)


def test_a_seed_gives_the_same_schedule() -> None:
    assert schedule(7, 60, 3) == schedule(7, 60, 3)
    assert schedule(7, 60, 3) != schedule(8, 60, 3)
    kinds = {step.kind for seed in range(30) for step in schedule(seed, 60, 3)}
    assert kinds == set(WEIGHTS)  # every fault the nemesis knows is drawn


def test_a_tag_is_found_in_the_message_the_worker_formats() -> None:
    assert tag_of("Responde en español.\n\nc7b3p12 says hello, prompt 12 of 40") == "c7b3p12"
    assert tag_of("Human: c7k1q3 asks a question") == "c7k1q3"
    assert tag_of("nothing here") == ""


def test_a_freeze_excuses_a_second_answer_only_for_the_frozen_workers_requests(
    tmp_path,
) -> None:
    fleet = Fleet(tmp_path, workers=3)
    fleet.sim = {"proxies": [f"http://127.0.0.1:{9000 + n}" for n in range(6)]}
    fleet.slots = [Slot(n) for n in range(3)]
    freeze = Fault("freeze", "worker 1", began=100.0, ended=105.0)
    checker = Checker(fleet, Workload.__new__(Workload), [freeze])
    out = {"arrived": 99.9, "ended": 100.3}
    assert checker._excused({**out, "identity": "proxy3"}) == "freeze"  # worker 1's proxy
    assert checker._excused({**out, "identity": "proxy1"}) == ""  # worker 0's: it held on
    assert checker._excused({**out, "identity": "proxy6"}) == ""
    assert checker._excused({"arrived": 101.0, "ended": 101.2, "identity": "proxy3"}) == ""


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", [*SEEDS, *REGRESSIONS])
def test_the_campaign_keeps_every_invariant(seed: int, tmp_path) -> None:
    report = run(seed, 60, workdir=tmp_path)
    assert report.passed, report.render()
