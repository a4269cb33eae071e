"""The checker: invariants proved from what the site saw (its ledger) and what Redis holds.

It never asks the service what it thinks happened: it reads the simulator's ledger over
HTTP and the batch records in Redis by their key names, and it knows the workload's tags
and the nemesis's history. Each broken invariant is a ``Violation`` naming it.

An answer counts when its sender could have read it: the site answered within the
workers' request timeout (a "slow" fault answers after the sender gave up, as a real
site does; that prompt was rightly tried again).

``on the wire at a lapse``: a prompt's first answer may be followed by a second one when
the request was out (or its answer not yet stored) at a moment its claim could lapse: its
sender frozen or killed while it was out (the proxy the site saw names the worker: each
has its own), or Redis away (stalled, paused, restarted) while it came back. ``STORE_SLACK`` covers an answer received but not yet written.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from contract import keys
from tests.campaign.fleet import WORKER_SETTINGS, Fleet
from tests.campaign.nemesis import LAPSING, Fault
from tests.campaign.workload import Batch, Workload

INVARIANTS = ("one result", "cancel", "twice", "exits", "ttl", "counts")
STORE_SLACK = 1.0  # seconds an answer may wait in its worker before it is stored
# The site notes an arrival once it has read the request: a request written just before a
# worker froze or died is noted up to this much after that moment (seed 12: 15 ms).
ARRIVAL_SLACK = 0.25
READ_WITHIN = float(str(WORKER_SETTINGS["request_timeout_seconds"]))
ENDED = ("completed", "cancelled", "expired")
STATES = ("queued", "running", "waiting", "succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.detail}"


def read_ledger(fleet: Fleet) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    since = 0
    while True:
        url = f"{fleet.sim['url']}/__sim/ledger?since={since}"
        with urllib.request.urlopen(url, timeout=30) as reply:
            page = json.load(reply)
        entries += page["entries"]
        if not page["entries"]:
            return entries
        since = page["next"]


def tag_of(message: str) -> str:
    """The prompt's tag: the first word of its text that looks like one."""
    for word in message.replace("\n", " ").split(" "):
        if word.startswith("c") and ("b" in word or "k" in word) and word[1:2].isdigit():
            return word.strip(".,:;\"'")
    return ""


class Checker:
    def __init__(self, fleet: Fleet, workload: Workload, history: list[Fault]) -> None:
        self.fleet = fleet
        self.workload = workload
        self.history = history
        self.lapses = [fault for fault in history if fault.kind in LAPSING]
        self.violations: list[Violation] = []
        self.answers: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.arrivals: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.figures: Counter[str] = Counter()

    def check(self) -> list[Violation]:
        self.ledger = read_ledger(self.fleet)
        for entry in self.ledger:
            tag = tag_of(entry["message"])
            self.arrivals[tag].append(entry)
            if entry["answered"] and entry["ended"] - entry["arrived"] < READ_WITHIN:
                self.answers[tag].append(entry)
        self.figures["site requests"] = sum(len(v) for v in self.arrivals.values())
        with self.fleet.client(timeout=30) as client:
            for batch in self.workload.batches:
                self._batch(client, batch)
            self._ttls(client)
        self._chats()
        self._twice()
        for exit_ in self.fleet.unexpected_exits:
            self.fail("exits", exit_)
        return self.violations

    def fail(self, invariant: str, detail: str) -> None:
        self.violations.append(Violation(invariant, detail))

    # -- one batch --------------------------------------------------------------------------

    def _batch(self, client: Any, batch: Batch) -> None:
        batch_id = batch.batch_id
        meta = {
            k.decode(): v.decode() for k, v in client.hgetall(keys.batch_meta(batch_id)).items()
        }
        state = meta.get("state", "gone")
        self.figures[f"batches {state}"] += 1
        if state not in ENDED:
            self.fail("one result", f"batch {batch_id} never ended (it is {state})")
        raw_results = client.hgetall(keys.batch_results(batch_id))
        results = {int(k): json.loads(v) for k, v in raw_results.items()}
        for index, tag in enumerate(batch.tags):
            result = results.get(index)
            if result is None:
                self.fail("one result", f"{batch_id}.{index} ({tag}) has no result")
                continue
            self._result(batch, index, tag, result)
        self._counts(client, batch, meta, results)
        if batch.cancel_returned is not None:
            late = [
                e for tag in batch.tags for e in self.arrivals[tag]
                if e["arrived"] > batch.cancel_returned
            ]  # fmt: skip
            for entry in late[:5]:
                after = entry["arrived"] - batch.cancel_returned
                self.fail("cancel", f"{tag_of(entry['message'])} of {batch_id} reached the "
                          f"site {after:.3f}s after cancel returned")  # fmt: skip

    def _result(self, batch: Batch, index: int, tag: str, result: dict[str, Any]) -> None:
        where = f"{batch.batch_id}.{index} ({tag})"
        self.figures[f"results {result['status']}"] += 1
        if result.get("custom_id") != tag or result.get("job_id") != f"{batch.batch_id}.{index}":
            self.fail("one result", f"{where}: the result of another prompt: {result['custom_id']}")
            return
        answered = self.answers.get(tag, [])
        status, error = result["status"], (result.get("error") or {}).get("type")
        if status == "succeeded":
            if tag not in (result.get("content") or ""):
                self.fail("one result", f"{where}: its answer is not its own")
            if not answered:
                self.fail("one result", f"{where}: succeeded, but the site never answered it")
            return
        allowed = {
            "BadRequestData": index in batch.poisoned,
            "Expired": batch.expired_at is not None,
            "Cancelled": batch.cancel_requested is not None,
        }  # fmt: skip
        if not allowed.get(error or "", False):
            self.fail("one result", f"{where}: {status} {error}: not a possible outcome here")
        elif answered and not self._excused(answered[0]):
            self.fail("one result", f"{where}: ended {error}, yet the site answered it")

    def _counts(
        self, client: Any, batch: Batch, meta: dict[str, str], results: dict[int, Any]
    ) -> None:
        counts = {
            k.decode(): int(v) for k, v in client.hgetall(keys.batch_counts(batch.batch_id)).items()
        }
        total = int(meta.get("total", -1))
        states = client.get(keys.batch_states(batch.batch_id)) or b""
        tally: Counter[str] = Counter()
        for index in range(total):
            byte = states[index // 2] if index // 2 < len(states) else 0
            tally[STATES[byte >> 4 if index % 2 == 0 else byte & 0x0F]] += 1
        by_result = Counter(result["status"] for result in results.values())
        for state in STATES:
            if counts.get(state, 0) != tally[state]:
                self.fail("counts", f"{batch.batch_id}: {state} counted {counts.get(state, 0)}, "
                          f"the states say {tally[state]}")  # fmt: skip
        for status in ("succeeded", "failed", "cancelled"):
            if by_result[status] != tally[status]:
                self.fail("counts", f"{batch.batch_id}: {by_result[status]} {status} results, "
                          f"{tally[status]} prompts in that state")  # fmt: skip
        if total != len(batch.tags):
            self.fail("counts", f"{batch.batch_id}: total {total}, {len(batch.tags)} enqueued")

    # -- chats, prompts answered twice, keys ----------------------------------------------

    def _chats(self) -> None:
        for chat in self.workload.chats:
            self.figures[f"chats {chat.status}"] += 1
            if chat.status == 200:
                if chat.tag not in chat.content:
                    self.fail("one result", f"chat {chat.tag}: its answer is not its own")
                if not self.answers.get(chat.tag):
                    self.fail("one result", f"chat {chat.tag}: 200, but the site never answered")

    def _twice(self) -> None:
        for tag, answers in self.answers.items():
            if len(answers) < 2:
                continue
            self.figures["answered twice"] += 1
            # Any send before the second answer may be the one that was out at a lapse (its
            # answer lost, or the site reset it): seed 376's frozen worker had the prompt out
            # (reset by the site while it was frozen); libcurl sent it again as it thawed,
            # after another worker's answer. Excused: it was on the wire at that lapse.
            excuse = next(filter(None, (
                self._excused(sent) for sent in self.arrivals[tag]
                if sent["arrived"] <= answers[1]["arrived"]
            )), "")  # fmt: skip
            if excuse:
                self.figures[f"answered twice, on the wire at a {excuse}"] += 1
                continue
            first, second = answers[0], answers[1]
            self.fail("twice", f"{tag} answered {len(answers)} times (first {first['arrived']:.3f}"
                      f"-{first['ended']:.3f}, then {second['arrived']:.3f}), on the wire at no "
                      "lapse")  # fmt: skip

    def _excused(self, first: dict[str, Any]) -> str:
        """The lapse at which a prompt's first answer was out, or unstored ("": none)."""
        arrived = first["arrived"] - ARRIVAL_SLACK
        ended = (first["ended"] or first["arrived"]) + STORE_SLACK
        for fault in self.lapses:
            if fault.kind in ("freeze", "kill"):
                sender = self.fleet.sender_of(first["identity"])
                if sender is not None and fault.target != f"worker {sender}":
                    continue  # another worker's fault: this one's claim held
                if arrived <= fault.began <= ended:
                    return fault.kind
            elif arrived <= fault.ended and ended >= fault.began:  # Redis away
                return fault.kind
        return ""

    def _ttls(self, client: Any) -> None:
        forever = []
        for key in client.scan_iter(count=1000):
            if client.ttl(key) == -1:
                forever.append(key.decode(errors="replace"))
        self.figures["keys"] = sum(1 for _ in client.scan_iter(count=1000))
        for key in sorted(forever)[:10]:
            self.fail("ttl", f"{key} has no TTL")


__all__ = ["INVARIANTS", "Checker", "Violation", "read_ledger", "tag_of"]
