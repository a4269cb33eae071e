"""Redis scripts kept as ``.lua`` files, one script a file, loaded once per client.

BullMQ's ``src/commands/*.lua`` is the model: each file opens with a header naming
its KEYS and ARGV and what it returns, and reads on its own. A line
``--- @include "name"`` pulls in a shared piece (``name.lua`` in the same folder)
where it stands, once per script. Constants a script shares with Python travel as
ARGV; those only Lua uses are written in the Lua. Nothing is patched into the text.

A script runs alone (``ScriptBook.run``, where redis-py reloads it after a Redis
restart) or inside a pipeline (``ScriptBook.pipelined``), which sends EVALSHA
without asking first whether Redis knows it, and loads the book again only when
Redis answers NOSCRIPT.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

_INCLUDE = re.compile(r'^--- @include "(?P<name>[a-z0-9_]+)"\s*$', re.MULTILINE)

Arg = str | int | float | bytes


@functools.cache
def source(package: str, name: str) -> str:
    """The text of ``name.lua`` in ``package``'s ``lua`` folder, with its includes."""
    folder = resources.files(package).joinpath("lua")
    seen: set[str] = set()

    def expand(script: str) -> str:
        def include(match: re.Match[str]) -> str:
            piece = match["name"]
            if piece in seen:
                return f"-- ({piece} included above)"
            seen.add(piece)
            return expand(folder.joinpath(f"{piece}.lua").read_text(encoding="utf-8"))

        return _INCLUDE.sub(include, script)

    return expand(folder.joinpath(f"{name}.lua").read_text(encoding="utf-8"))


class ScriptBook:
    """The scripts one component runs, registered on its Redis client."""

    def __init__(self, redis: Redis, package: str, names: Iterable[str]) -> None:
        self.redis = redis
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(source(package, name)) for name in names
        }

    def __getitem__(self, name: str) -> AsyncScript:
        return self._scripts[name]

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Arg] = ()) -> Any:
        """One script, alone (redis-py loads it again if Redis forgot it)."""
        return await self._scripts[name](keys=list(keys), args=list(args))

    def queue(self, pipe: Any, name: str, keys: Sequence[str], args: Sequence[Arg] = ()) -> None:
        """Adds one script call to a pipeline (run by ``pipelined``)."""
        pipe.evalsha(self._scripts[name].sha, len(keys), *keys, *args)

    async def pipelined(self, build: Callable[[Any], None], *, transaction: bool = False) -> list:
        """Runs the pipeline ``build`` fills; loads the scripts again if Redis forgot them."""
        for attempt in (1, 2):
            async with self.redis.pipeline(transaction=transaction) as pipe:
                build(pipe)
                try:
                    return await pipe.execute()
                except NoScriptError:
                    if attempt == 2:
                        raise
            await self.load()  # Redis restarted (or was flushed) and forgot them
        raise AssertionError("unreachable")

    async def load(self) -> None:
        for script in self._scripts.values():
            script.sha = await self.redis.script_load(script.script)
