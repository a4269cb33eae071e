"""The campaign's workload: batches through the CLI, chat completions through the API.

Every prompt carries a tag of its own (``c<seed>b<batch>p<n>``, also its ``custom_id``),
so that the checker can find it in the site's ledger and in its answer. A chat
completion retried by its client (after a 503, say) is a new prompt with a new tag.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from tests.campaign.fleet import Fleet

API_KEY = "sk-campaign-key-0123456789"


@dataclass
class Batch:
    number: int
    tags: list[str]
    batch_id: str = ""
    enqueued_at: float = 0.0
    cancel_requested: float | None = None  # when ``chatgptes cancel`` was run
    cancel_returned: float | None = None  # when it exited 0
    expired_at: float | None = None  # when the nemesis ended its completion window
    retried_at: float | None = None
    poisoned: dict[int, float] = field(default_factory=dict)  # index → when


@dataclass
class Chat:
    tag: str
    sent: float
    status: int = 0
    content: str = ""
    done: float = 0.0


@dataclass
class Workload:
    fleet: Fleet
    seed: int
    rng: random.Random
    batches: list[Batch] = field(default_factory=list)
    chats: list[Chat] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def tag(self, batch: int, n: int) -> str:
        return f"c{self.seed}b{batch}p{n}"

    # -- batches ----------------------------------------------------------------------------

    def enqueue(self, size: int) -> Batch | None:
        number = len(self.batches)
        batch = Batch(number, [self.tag(number, n) for n in range(size)])
        path = self.fleet.workdir / f"batch{number}.jsonl"
        path.write_text(
            "".join(
                json.dumps(
                    {
                        "custom_id": tag,
                        "messages": [
                            {"role": "user", "content": f"{tag} says hello, prompt {n} of {size}"}
                        ],
                    }
                )
                + "\n"
                for n, tag in enumerate(batch.tags)
            )
        )
        done = self.cli("enqueue", str(path), "--json")
        if done.returncode != 0:
            # Redis may be down or full right now: the enqueue wrote nothing; not a batch.
            self.errors.append(f"enqueue {number} refused: {done.stderr.strip()[-300:]}")
            return None
        batch.batch_id = json.loads(done.stdout)["batch_id"]
        batch.enqueued_at = time.time()
        self.batches.append(batch)
        return batch

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chatgptes.cli", *args],
            env={**_base_env(), **self.fleet.env()}, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip

    def feed_batches(self, seconds: float) -> None:
        """A big and a middling batch at once, then one more every few seconds."""
        started = time.monotonic()
        for size in (300, 120):
            self.enqueue(size)
        while not self._stop.wait(self.rng.uniform(3, 7)):
            if time.monotonic() - started > seconds:
                return
            self.enqueue(self.rng.randint(20, 200))

    # -- chat completions -------------------------------------------------------------------

    def chat_client(self, client: int, seconds: float) -> None:
        """One API client asking one chat completion after another, as an app does."""
        started, n = time.monotonic(), 0
        while not self._stop.is_set() and time.monotonic() - started < seconds:
            tag = f"c{self.seed}k{client}q{n}"
            n += 1
            chat = Chat(tag, time.time())
            self.chats.append(chat)
            body = json.dumps({"model": "gpt-4o", "messages": [
                {"role": "user", "content": f"{tag} asks a question"}]}).encode()  # fmt: skip
            request = urllib.request.Request(
                self.fleet.api_url + "/chat/completions", data=body, method="POST",
                headers={"Authorization": f"Bearer {API_KEY}",
                         "Content-Type": "application/json"},
            )  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=150) as reply:
                    chat.status = reply.status
                    chat.content = json.load(reply)["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as error:
                chat.status = error.code
                self._stop.wait(1.0)  # a 503 (Redis away): the client waits, asks anew
            except (OSError, ValueError) as error:
                chat.status = -1
                chat.content = type(error).__name__
                self._stop.wait(1.0)
            chat.done = time.time()

    # -- running ----------------------------------------------------------------------------

    def start(self, seconds: float, chat_clients: int = 3) -> None:
        threads = [threading.Thread(target=self.feed_batches, args=(seconds,), name="batches")]
        threads += [
            threading.Thread(target=self.chat_client, args=(n, seconds), name=f"chat{n}")
            for n in range(chat_clients)
        ]
        for thread in threads:
            thread.start()
        self._threads = threads

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=200)


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("CHATGPTES_")}


__all__ = ["API_KEY", "Batch", "Chat", "Workload"]
