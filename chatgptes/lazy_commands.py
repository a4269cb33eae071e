"""A click group whose commands load when they run: ``status`` never pays for ``serve``.

click's documented LazyGroup pattern: each lazy command is named by ``module:attribute``
and imported only when it is invoked (or its own ``--help`` is asked for). The group's
``--help`` lists every command with the one-line help given here, so listing them
imports none; ``tests/test_cli.py`` checks that each line is the command's own.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

import click


class LazyCommand(NamedTuple):
    import_path: str  # "package.module:attribute"
    short_help: str  # what the command's own help says first


class LazyGroup(click.Group):
    def __init__(
        self, *args: Any, lazy_commands: dict[str, LazyCommand] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands and cmd_name not in self.commands:
            self.add_command(load(self.lazy_commands[cmd_name]), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help``, without importing the lazy commands."""
        limit = formatter.width - 6 - max(len(name) for name in self.list_commands(ctx))
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                command = self.commands[name]
                if not command.hidden:
                    rows.append((name, command.get_short_help_str(limit)))
            else:
                # a stand-in holding the same help, shortened the way click shortens it
                stand_in = click.Command(name, help=self.lazy_commands[name].short_help)
                rows.append((name, stand_in.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def load(lazy: LazyCommand) -> click.Command:
    module_name, _, attribute = lazy.import_path.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{lazy.import_path} is not a click command")
    return command
