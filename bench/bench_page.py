"""Microseconds to read a site profile from the simulator's ~45 KB page, in each markup.

    .venv/bin/python bench/bench_page.py [--parser-from /tmp/before/worker/page.py]

The pages are rendered by this checkout's simulator (a custom-bot widget, and the default
shortcode); ``--parser-from`` also times another ``worker/page.py`` (an older checkout's)
on the very same pages, so the two figures are comparable. Each figure is the best of 7
rounds of 300 parses, in one process.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from simulator.config import MARKUPS, SimConfig
from simulator.pages import PageRenderer
from worker import page

SITE = "http://127.0.0.1:8790"
PROFILES = {"shortcode": {}, "custom-bot widget": {"bot_id": 4367, "chat_type": "widget"}}


def pages() -> dict[str, str]:
    out = {}
    for name, options in PROFILES.items():
        config = SimConfig(**options)  # type: ignore[arg-type]
        renderer = PageRenderer(SITE, config)
        for markup in MARKUPS:
            out[f"{name}, {markup}"] = renderer.render(markup, "0123456789", "abcdef0123")
    return out


def best_microseconds(parse: Callable[[str], Any], html: str) -> float:
    rounds = timeit.repeat(lambda: parse(html), number=300, repeat=7)
    return round(min(rounds) / 300 * 1e6, 1)


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("other_page", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parser-from", type=Path, help="another worker/page.py to time")
    args = parser.parse_args()
    other = load(args.parser_from) if args.parser_from else None
    rows = []
    for name, html in pages().items():
        row: dict[str, Any] = {"page": name, "chars": len(html)}
        row["this_us"] = best_microseconds(page.parse_page, html)
        if other is not None:
            row["other_us"] = best_microseconds(other.parse_page, html)
        rows.append(row)
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
