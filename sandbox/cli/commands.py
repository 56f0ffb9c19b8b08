"""The command table: every `sbx` command once, and the global options; both parsers are built from it.

A row names how the command is spelled (``"ps, container ps, container ls"``: the top-level word and the
``sbx GROUP WORD`` forms), the module and function that implement it, and how it is parsed. The function declares
its own options and arguments (the :mod:`sandbox.cli.params` records, or typer's for the commands that are not
hot). :mod:`sandbox.cli.app` builds the typer application from the table, and :mod:`sandbox.cli.fast` parses the
rows marked ``fast`` without importing typer (their modules must not import it either). Nothing else lists
commands; ``tests/unit/test_cli_fast.py`` generates command lines and checks that both parsers agree.

Global options (:func:`global_options`) come before the command name only: ``sbx --debug run IMG sh`` turns
tracebacks on, ``sbx run IMG sh --debug`` gives ``--debug`` to sh, as click's groups (and Docker) read them.

This module is read on every command: it imports nothing but the records, and loads no command module.
"""

from __future__ import annotations

import os
import sys

from sandbox.cli.params import Option
from sandbox.exitcodes import CANNOT_RUN, SBX_ERROR

# sbx GROUP ... : the help text of each group, in the order `sbx --help` lists them
GROUPS = {
    "image": "Manage images.",
    "system": "Manage sbx.",
    "container": "Manage containers.",
    "policy": "Seccomp profiles.",
    "volume": "Manage volumes.",
}


class Command:
    """One row: a function of ``sandbox.cli.MODULE`` and the command lines that reach it.

    ``interspersed``: options may follow arguments (False for `run`, `exec`, `create`: what follows the image or
    container is the container's command). ``failure_code``: the exit code of an sbx error that carries none
    (Docker's 125 for `run` and `create`). ``factory``: the module attribute builds the function when called.
    """

    __slots__ = ("spellings", "module", "function", "fast", "interspersed", "hidden", "failure_code", "factory")

    def __init__(self, spellings: str, module: str, function: str, *, fast: bool = False, interspersed: bool = True,
                 hidden: bool = False, failure_code: int = SBX_ERROR, factory: bool = False) -> None:
        self.spellings = tuple(tuple(spelling.split()) for spelling in spellings.split(","))
        self.module = "sandbox.cli." + module
        self.function = function
        self.fast = fast
        self.interspersed = interspersed
        self.hidden = hidden
        self.failure_code = failure_code
        self.factory = factory

    def load(self):
        """The command's function (imports its module)."""
        import importlib

        attribute = getattr(importlib.import_module(self.module), self.function)
        return attribute() if self.factory else attribute


# in the order `sbx --help` (and each group's --help) lists them
COMMANDS = (
    Command("version", "version", "version", fast=True),
    Command("pull, image pull", "images", "pull"),
    Command("push, image push", "images", "push"),
    Command("images, image ls, image list", "images", "images", fast=True),
    Command("rmi, image rm", "images", "rmi", fast=True),
    Command("tag, image tag", "images", "tag", fast=True),
    Command("search", "images", "search"),
    Command("login", "images", "login"),
    Command("logout", "images", "logout"),
    Command("image inspect", "images", "image_inspect"),
    Command("system df", "system", "df"),
    Command("system prune", "system", "prune"),
    Command("system check", "system", "check"),
    Command("info, system info", "system", "info"),
    Command("system service", "service", "service"),
    Command("save, image save", "archive", "save"),
    Command("load, image load", "archive", "load"),
    Command("import, image import", "archive", "import_image"),
    Command("run, container run", "run", "run", fast=True, interspersed=False, failure_code=CANNOT_RUN),
    Command("inspect", "containers", "inspect_any"),
    Command("create, container create", "containers", "create_command", interspersed=False,
            failure_code=CANNOT_RUN, factory=True),
    Command("container prune", "containers", "prune"),
    Command("ps, container ps", "containers", "ps", fast=True),
    Command("logs, container logs", "containers", "logs", fast=True),
    Command("stop, container stop", "containers", "stop", fast=True),
    Command("kill, container kill", "containers", "kill", fast=True),
    Command("rm, container rm", "containers", "rm", fast=True),
    Command("wait, container wait", "containers", "wait", fast=True),
    Command("start, container start", "containers", "start", fast=True),
    Command("restart, container restart", "containers", "restart"),
    Command("rename, container rename", "containers", "rename"),
    Command("top, container top", "containers", "top"),
    Command("port, container port", "containers", "port"),
    Command("container ls, container list", "containers", "ps", fast=True),
    Command("container inspect", "containers", "container_inspect"),
    Command("stats, container stats", "resources", "stats"),
    Command("pause, container pause", "resources", "pause"),
    Command("unpause, container unpause", "resources", "unpause"),
    Command("exec, container exec", "exec", "exec_command", fast=True, interspersed=False),
    Command("attach, container attach", "attach", "attach", fast=True),
    Command("doctor", "doctor", "doctor"),
    Command("policy ls", "policy", "ls"),
    Command("policy check", "policy", "check"),
    Command("volume create", "volumes", "create"),
    Command("volume ls", "volumes", "ls"),
    Command("volume list", "volumes", "ls", hidden=True),
    Command("volume inspect", "volumes", "inspect"),
    Command("volume rm", "volumes", "rm"),
    Command("volume remove", "volumes", "rm", hidden=True),
    Command("volume prune", "volumes", "prune"),
)

_BY_SPELLING = {spelling: command for command in COMMANDS for spelling in command.spellings}


def find(args: list[str]) -> tuple[Command, list[str]] | None:
    """The command ``args`` (argv after the global options) names, and the arguments after its name."""
    if len(args) > 1 and args[0] in GROUPS:
        found = _BY_SPELLING.get((args[0], args[1]))
        return (found, args[2:]) if found else None
    found = _BY_SPELLING.get(tuple(args[:1]))
    return (found, args[1:]) if found else None


def failure_code(args: list[str]) -> int:
    """The exit code of an sbx error without a code of its own, for the command line ``args``."""
    found = find(args)
    return found[0].failure_code if found else SBX_ERROR


def _print_version(value: bool) -> None:
    if value:
        import typer

        from sandbox import __version__

        sys.stdout.write(f"sbx version {__version__}\n")
        raise typer.Exit()


def global_options(
    debug: bool = Option(False, "--debug", "-D", help="Show tracebacks of errors."),
    storage_driver: str = Option(
        None, "--storage-driver", help="Root filesystem driver: overlay, fuse-overlayfs or copy (default: probed)."
    ),
    version: bool = Option(
        False, "--version", "-v", callback=_print_version, is_eager=True, help="Print version information and quit."
    ),
) -> None:
    """The options before the command name, for every command: they are passed on in the environment, so the
    container's monitor (a fresh process) sees them as well."""
    if debug:
        os.environ["SBX_DEBUG"] = "1"
    if storage_driver:
        os.environ["SBX_STORAGE_DRIVER"] = storage_driver
