"""The official Node SDK (``openai`` on npm) against ``chatgptes serve``, real workers and
the simulator: code written for OpenAI in JavaScript runs here by changing ``baseURL``,
an agent loop (``runTools``) included.

The SDK is installed with npm into a directory of the tests' own (``.venv/node-sdk``,
once); where node or npm is missing, or the install cannot be done, the test skips.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
KEY, OTHER_KEY = "sk-node-0123456789abc", "sk-node-other-0123456789"
SDK_VERSION = "openai@^7"
SCRIPT = Path(__file__).parent / "node" / "sdk_check.mjs"


@pytest.fixture(scope="session")
def node_sdk(repo_root_path: Path) -> Path:
    """The directory whose node_modules holds the SDK."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the Node SDK test")
    prefix = repo_root_path / ".venv" / "node-sdk"
    if not (prefix / "node_modules" / "openai" / "package.json").exists():
        prefix.mkdir(parents=True, exist_ok=True)
        installed = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent",
             SDK_VERSION],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if installed.returncode != 0:
            pytest.skip(f"npm could not install {SDK_VERSION}: {installed.stderr[-300:]}")
    return prefix / "node_modules"


@pytest.fixture(scope="session")
def repo_root_path() -> Path:
    return Path(__file__).resolve().parent.parent


def test_node_sdk_code_runs_by_changing_base_url(fleet, node_sdk: Path) -> None:
    fleet.start_simulator("--latency", "fixed:20")
    fleet.start_workers(1, proxy_rate_per_second=0)
    base_url = fleet.start_api(api_keys=f"{KEY},other:{OTHER_KEY}")
    ran = subprocess.run(
        ["node", str(SCRIPT), str(node_sdk), base_url, KEY, OTHER_KEY],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-2000:]
    seen = json.loads(ran.stdout.strip().splitlines()[-1])
    assert {"gpt-4o", "gpt-4.1-mini", "gpt-3.5-turbo"} <= set(seen["models"])
    chat = seen["chat"]
    assert chat["model"] == "gpt-4.1-mini" and "System: Answer briefly." in chat["content"]
    assert chat["finish"] == "stop" and chat["fingerprint"] and chat["requestId"].startswith("req_")
    assert seen["cut"]["finish"] == "length" and 0 < seen["cut"]["tokens"] <= 4
    assert seen["streamed"].endswith("User: What is Redis?\nAssistant:")
    assert seen["structured"] == {"name": "echo", "age": 1}
    assert seen["response"]["status"] == "completed"
    assert seen["responseStream"] == {"first": "response.created", "last": "response.completed",
                                      "text": seen["response"]["text"]}  # fmt: skip
    batch = seen["batch"]
    assert batch["status"] == "completed" and batch["model"] == "gpt-3.5-turbo"
    assert batch["counts"] == {"total": 3, "completed": 3, "failed": 0}
    assert batch["outputIds"] == ["n0", "n1", "n2"]
    assert seen["cancel"] in ("cancelling", "cancelled")
    assert seen["failed"] == {"status": "failed", "line": 1}
    assert seen["isolation"] == {"batch": 404, "file": 404, "listed": 0}
    assert seen["runTools"] == {
        "final": "Echo: What is the weather in Paris? Use getWeather. "
                 "(getWeather: 18 C and sunny in echo)",
        "calledWith": ["echo"], "finishes": ["tool_calls", "stop"],
    }  # fmt: skip
    assert seen["errors"]["unknownModel"] == 404 and seen["errors"]["tools"] == 400
    assert seen["errors"]["notFound"] == 404
