"""A worker with one fault planted, for the chaos tests: ``python -m tests.faulty_worker FAULT``.

- ``broker-crash``: the lease exchange raises an unexpected ValueError on its 20th call
  (a bug in a loop: the worker must say so and go down, not hang looking healthy);
- ``poison``: sending a prompt whose text holds POISON kills the worker process, as a
  prompt that crashes the interpreter would.

Everything else is ``chatgptes worker`` as it ships.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def plant(fault: str) -> None:
    if fault == "broker-crash":
        import worker.broker
        from worker.leases import Exchange

        real = worker.broker.exchange_all
        calls = {"n": 0}

        async def exchange_all(exchanges: list[Exchange]) -> Any:
            calls["n"] += 1
            if calls["n"] >= 20:
                raise ValueError("a reply the broker does not know")
            return await real(exchanges)

        # The broker's one round trip per turn (every site's exchange in one pipeline).
        worker.broker.exchange_all = exchange_all  # type: ignore[assignment]
    elif fault == "poison":
        from worker.client import ChatGptEsClient

        real_ask = ChatGptEsClient.ask

        async def ask(self: ChatGptEsClient, identity: Any, session: Any, messages: Any,
                      *args: Any) -> str:  # fmt: skip
            if any("POISON" in message.content for message in messages):
                os.kill(os.getpid(), signal.SIGKILL)
            return await real_ask(self, identity, session, messages, *args)

        ChatGptEsClient.ask = ask  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown fault {fault!r}")


if __name__ == "__main__":
    plant(sys.argv[1])
    from chatgptes.cli import main

    sys.argv = ["chatgptes", "worker", *sys.argv[2:]]
    main()
