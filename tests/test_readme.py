"""The README stays true: its settings, commands and metrics exist, its Python example
runs as written against real workers, and the blocks it marks as tested run as written
against a local fleet (`chatgptes up`), from the shell or Python, with no other setting."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import click
import pytest

from chatgptes.cli import main
from chatgptes.settings_view import every_settings
from simulator.local import wait_until
from tests.processes import alive, descendants

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


# -- the blocks marked as tested, run against a real local fleet ---------------------------

# `<!-- tested -->` before a block: it runs as written, in order, in one working directory;
# `<!-- tested: fleet -->`: it starts the fleet (`chatgptes up`) the section's blocks use.
TESTED = re.compile(
    r"^<!-- tested(?P<fleet>: fleet)? -->\n```(?P<language>sh|python)\n(?P<code>.*?)\n```$",
    re.M | re.S,
)
SECTION = re.compile(r"^#{2,3} (.+)$", re.M)
OWN_VARIABLES = ("CHATGPTES_", "OPENAI_")


class Block(NamedTuple):
    section: str
    language: str
    code: str
    fleet: bool


def readme_blocks() -> list[Block]:
    """The README's tested blocks, in order, each with the section it is in."""
    headings = [(m.start(), m[1]) for m in SECTION.finditer(README)]
    found = []
    for match in TESTED.finditer(README):
        section = [title for at, title in headings if at < match.start()][-1]
        found.append(Block(section, match["language"], match["code"], bool(match["fleet"])))
    return found


class LocalFleet:
    """A README fleet block run in the background, stopped with Ctrl-C (SIGINT)."""

    def __init__(self, code: str, cwd: Path, env: dict[str, str]) -> None:
        self.env_file = cwd / ".run" / "up.env"
        self.log = cwd / "fleet.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(["bash", "-e", "-c", code], cwd=cwd, env=env,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)  # fmt: skip
        self.started: set[int] = set()

    def exports(self) -> dict[str, str]:
        def written() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the fleet exited: {self.log.read_text()}")
            return self.env_file.exists()

        wait_until(written, timeout=90, what="chatgptes up to write its environment")
        self.started = descendants(self.process.pid)
        lines = self.env_file.read_text().splitlines()
        pairs = (shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in lines)
        return dict(pairs)

    def interrupt(self) -> int:
        """Ctrl-C as a terminal sends it (to the foreground group); the exit code."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            for pid in self.started | descendants(self.process.pid):
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


@pytest.mark.e2e
def test_the_tested_blocks_run_as_written_against_a_local_fleet(tmp_path: Path) -> None:
    blocks = readme_blocks()
    assert [b.section for b in blocks if b.fleet] == [
        "Offline, with your own prompts", "OpenAI-compatible API"]  # fmt: skip
    (tmp_path / ".venv").symlink_to(sys.prefix)  # the venv the tests run in
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    # No setting of the user's own: what the README says to export is all there is.
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_VARIABLES)}
    env |= {"TMPDIR": str(temporary), "PATH": f"{tmp_path / '.venv' / 'bin'}:{env['PATH']}"}
    fleet: LocalFleet | None = None
    outputs: dict[str, list[str]] = {}
    try:
        for block in blocks:
            if block.fleet:
                if fleet is not None:
                    assert fleet.interrupt() == 0, fleet.log.read_text()
                fleet = LocalFleet(block.code, tmp_path, env)
                exports = fleet.exports()
                continue
            if block.language == "sh":
                argv = ["bash", "-e", "-c", block.code]
                ran_env = env
            else:
                argv = [sys.executable, "-c", block.code]
                ran_env = {**env, **(exports if fleet is not None else {})}
            ran = subprocess.run(argv, cwd=tmp_path, env=ran_env, capture_output=True,
                                 text=True, timeout=180)  # fmt: skip
            assert ran.returncode == 0, f"{block.section}:\n{block.code}\n{ran.stderr[-3000:]}"
            outputs.setdefault(block.section, []).append(ran.stdout)
        assert fleet is not None
        started = fleet.started
        assert fleet.interrupt() == 0, fleet.log.read_text()
    finally:
        if fleet is not None:
            fleet.interrupt()

    results = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(results) == 200 and {r["status"] for r in results} == {"succeeded"}
    assert results[0]["content"] == "Echo: Question 1?"
    (api,) = outputs["OpenAI-compatible API"]
    assert api.startswith("completed ") and "200 answers" in api, api
    # Ctrl-C left nothing behind: no process, no temporary folder, no environment file.
    assert started and [pid for pid in started if alive(pid)] == []
    assert list(temporary.iterdir()) == [] and not (tmp_path / ".run" / "up.env").exists()
