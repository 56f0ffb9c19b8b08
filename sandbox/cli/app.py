"""The typer application, built from the command table (:mod:`sandbox.cli.commands`): global options, groups,
and every command under each of its spellings."""

from __future__ import annotations

import typer

from sandbox.cli.commands import COMMANDS, GROUPS, global_options
from sandbox.cli.params import to_typer

app = typer.Typer(
    name="sbx",
    help="Rootless, daemonless, Docker-compatible sandboxes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.callback()(to_typer(global_options))

_groups = {name: typer.Typer(help=text, no_args_is_help=True) for name, text in GROUPS.items()}
for _command in COMMANDS:
    _function = to_typer(_command.load())
    _settings = None if _command.interspersed else {"allow_interspersed_args": False}
    for _spelling in _command.spellings:
        _where = app if len(_spelling) == 1 else _groups[_spelling[0]]
        _where.command(_spelling[-1], context_settings=_settings, hidden=_command.hidden)(_function)
for _name, _group in _groups.items():
    app.add_typer(_group, name=_name)
