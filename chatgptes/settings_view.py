"""``chatgptes config``: every setting of every role, its current value and what it does.

The settings classes are the only list of settings (``chatgptes.setting_names`` copies
their names for the misspelling check). Reading them imports the worker's and the API
server's settings modules, never what those roles run (the tokenizer, aiohttp's client):
``tests/test_cli_imports.py`` keeps it so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from chatgptes.running import load_settings

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo
    from pydantic_settings import BaseSettings


@click.command()
@click.option(
    "--env-example",
    is_flag=True,
    help="Print a .env template instead: every setting commented out at its default.",
)
def config(env_example: bool) -> None:
    """List every setting with its current value (secrets masked) and what it does."""
    if env_example:
        click.echo(env_template(), nl=False)
        return
    described = {settings: load_settings(settings).describe() for settings in every_settings()}
    for settings, name, field in every_field():
        click.echo(f"CHATGPTES_{name.upper()}={described[settings][name]}")
        click.echo(f"    {field.description}")


def every_settings() -> tuple[type[BaseSettings], ...]:
    """The settings of every role: the queue's and a worker's, then the API server's own."""
    from producer.http.settings import ApiSettings
    from worker.config import WorkerConfig

    return WorkerConfig, ApiSettings


def every_field() -> Iterator[tuple[type[BaseSettings], str, FieldInfo]]:
    """Each setting once (the roles share the queue's), with the first role that has it."""
    listed: set[str] = set()
    for settings in every_settings():
        for name, field in settings.model_fields.items():
            if name not in listed:
                listed.add(name)
                yield settings, name, field


def env_template() -> str:
    """A .env file listing every setting, commented out at its default (as .env.example)."""
    from pydantic import SecretStr

    lines = [
        "# chatgptes-queue settings: uncomment and change what you need.",
        "# Made by `chatgptes config --env-example`; `chatgptes config` shows current values.",
    ]
    defaults = {s: s.model_construct().model_dump(mode="json") for s in every_settings()}
    for settings, name, field in every_field():
        default = defaults[settings][name]
        if isinstance(default, dict | list):
            default = json.dumps(default)
        # A secret's default is empty; model_dump would show it masked.
        shown = "" if default is None or field.annotation is SecretStr else default
        lines += ["", f"# {field.description}", f"# CHATGPTES_{name.upper()}={shown}"]
    return "\n".join(lines) + "\n"
