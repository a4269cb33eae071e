"""The README stays true: its settings, commands and metrics exist, and its Python
example runs as written against real workers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from chatgptes.cli import main
from chatgptes.settings_view import every_settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_setting_named_is_one() -> None:
    known = {f"CHATGPTES_{name.upper()}" for s in every_settings() for name in s.model_fields}
    named = set(re.findall(r"CHATGPTES_[A-Z0-9_]*[A-Z0-9]", README))
    # `CHATGPTES_PROXY_RATE_PER_SECOND` / `_BURST` style pairs name the second by suffix.
    assert named - known == set()


def test_every_command_named_is_one() -> None:
    named = set(re.findall(r"`chatgptes ([a-z]+)", README))
    commands = set(main.list_commands(click.Context(main)))  # those loaded when run too
    assert named and named <= commands, named - commands


def test_every_metric_named_is_served() -> None:
    source = (ROOT / "worker" / "metrics.py").read_text()
    named = set(re.findall(r"`chatgptes_([a-z_]+)`", README))
    assert named
    for metric in named:
        assert f'f"{{PREFIX}}_{metric.removesuffix("_total")}"' in source, metric


def python_example() -> str:
    section = README[README.index("## Python API") :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("\n```", start)]


@pytest.mark.e2e
def test_the_python_example_runs_as_written(fleet) -> None:
    fleet.start_simulator("--latency", "fixed:5")
    fleet.start_workers(1, proxy_rate_per_second=0)
    ran = subprocess.run(
        [sys.executable, "-c", python_example()],
        cwd=ROOT,  # the example reads examples/prompts.jsonl
        env={**os.environ, **fleet.env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    warnings = [line for line in ran.stdout.splitlines() if line.startswith("warning: ")]
    lines = ran.stdout.splitlines()[len(warnings) :]
    assert warnings == [
        "warning: temperature (5 prompts): accepted but not honoured: "
        "chatgpt.es has no such setting"
    ]  # the example file's OpenAI lines
    assert lines[0] == "completed: 40/40 succeeded", ran.stdout
    answered = [line.split()[0] for line in lines if re.match(r"\S+ succeeded Echo: ", line)]
    assert answered[0] == "q01" and len(answered) == 40, ran.stdout
