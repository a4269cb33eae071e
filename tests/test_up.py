"""``chatgptes up``: what it refuses, and a fleet that loses a process stops whole.

The happy path (your own 200 prompts offline, then Ctrl-C leaving nothing behind) runs
as the README shows it, in ``test_readme.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.local import free_port, wait_until
from tests.processes import alive, descendants


def up_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATGPTES_")}
    return {**env, "TMPDIR": str(tmp_path / "tmp")}


def test_a_redis_to_start_and_one_to_use_are_refused_together(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chatgptes.cli", "up", "--redis-port", "7000", "--redis-url",
         "redis://127.0.0.1:7000/0"],
        env=up_env(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "not both" in done.stderr


def test_an_unreachable_redis_url_starts_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "chatgptes.cli", "up", "--redis-url",
         f"redis://:s3cret@127.0.0.1:{free_port()}/0"],
        env=up_env(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and "is not reachable" in done.stderr, done.stderr
    assert "s3cret" not in done.stderr and done.stdout == ""  # no export line for a fleet
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.e2e
def test_a_worker_that_dies_stops_the_fleet_and_keeps_its_logs(tmp_path: Path) -> None:
    env_file = tmp_path / "up.env"
    fleet = subprocess.Popen(
        [sys.executable, "-m", "chatgptes.cli", "up", "--workers", "2", "--env-file",
         str(env_file)],
        # A queue named in the shell is not the fleet's: up names its own in what it exports.
        env={**up_env(tmp_path), "CHATGPTES_QUEUE_NAME": "someone-elses"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    started: set[int] = set()
    try:
        wait_until(lambda: env_file.exists() or fleet.poll() is not None, timeout=90,
                   what="chatgptes up to be ready")  # fmt: skip
        started = descendants(fleet.pid)
        workers = [pid for pid in started
                   if b"chatgptes.cli\x00worker" in Path(f"/proc/{pid}/cmdline").read_bytes()]  # fmt: skip
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        assert fleet.wait(timeout=60) == 1
        out, err = fleet.communicate(timeout=10)
    finally:
        if fleet.poll() is None:
            os.killpg(fleet.pid, signal.SIGKILL)
            fleet.wait()
        for pid in started:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert "export CHATGPTES_REDIS_URL=" in out
    assert "export CHATGPTES_QUEUE_NAME=chatgptes:queue" in out
    assert "exited with code -9" in err and "stopped simulator" in err, err
    assert [pid for pid in started if alive(pid)] == []
    (kept,) = (tmp_path / "tmp").iterdir()
    assert f"logs kept in {kept}" in err and (kept / "worker-1.log").exists()
    assert not env_file.exists()
