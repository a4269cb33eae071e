"""Redis scripts kept as files: each reads on its own, loads on a real server, and is used."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contract.scripts import source

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(
    path for package in ("contract", "worker") for path in (ROOT / package).glob("lua/*.lua")
)
INCLUDED = {
    match
    for path in FILES
    for match in re.findall(r'^--- @include "(\w+)"', path.read_text(), re.MULTILINE)
}
RUN_ALONE = [path for path in FILES if path.stem not in INCLUDED]


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.stem)
def test_each_script_opens_with_a_header_naming_what_it_takes(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("--[[\n"), "a header comment first"
    header = text.split("]]", 1)[0]
    if path.stem in INCLUDED:
        assert "included" in header
    else:
        assert "KEYS" in header and "Returns" in header, header


@pytest.mark.parametrize("path", RUN_ALONE, ids=lambda path: path.stem)
def test_each_script_is_run_by_the_service(path: Path) -> None:
    python = [p.read_text() for p in ROOT.glob("*/*.py") if p.parts[-2] in ("contract", "worker")]
    assert any(f'"{path.stem}"' in text for text in python), f"{path.stem} is never loaded"


@pytest.mark.parametrize("path", RUN_ALONE, ids=lambda path: path.stem)
async def test_each_script_loads_on_a_real_redis_server(path: Path, real_redis) -> None:
    text = source(path.parent.parent.name, path.stem)
    assert "@include" not in text
    assert len(await real_redis.script_load(text)) == 40


def test_an_include_is_pulled_in_once() -> None:
    text = source("worker", "acquire_leases")
    assert text.count("local function classify(") == 1
