"""Command parameters declared without importing typer, so that hot commands can be parsed without it.

A command function declares its parameters as typer does (``name: bool = Option(False, "--all", "-a", help=...)``,
``names: list[str] = Argument(..., metavar=...)``) but with the :class:`Param` records of this module. Two readers
share that one declaration: :func:`to_typer` turns the function into a typer command (for help, completion and
every command), and :mod:`sandbox.cli.fast` parses the common invocations of the hot commands (`run`, `exec`, `ps`,
`rm`, ...) directly, because importing typer and building its application costs ~60 ms, more than the whole
budget of a container start (BENCHMARKS B1-B3, B11).

The modules that declare commands this way must use ``from __future__ import annotations``: the fast parser reads
the annotations as the strings ``bool``, ``int``, ``str`` and ``list[str]``.
"""

from __future__ import annotations


class Param:
    """One declared parameter (a plain class: the dataclass machinery costs the hot path milliseconds)."""

    __slots__ = ("kind", "default", "names", "extra")

    def __init__(self, kind: str, default: object, names: tuple[str, ...] = (), extra: dict | None = None) -> None:
        self.kind = kind  # "option" or "argument"
        self.default = default
        self.names = names
        self.extra = extra or {}


def Option(default: object, *names: str, **extra: object) -> Param:  # noqa: N802 - reads as typer.Option
    return Param("option", default, names, extra)


def Argument(default: object, **extra: object) -> Param:  # noqa: N802 - reads as typer.Argument
    return Param("argument", default, (), extra)


def to_typer(func):
    """The command as typer wants it: the same function behind a signature whose defaults are typer's."""
    import functools
    import inspect

    import typer

    signature = inspect.signature(func)
    parameters = []
    for parameter in signature.parameters.values():
        default = parameter.default
        if isinstance(default, Param):
            maker = typer.Option if default.kind == "option" else typer.Argument
            default = maker(default.default, *default.names, **default.extra)
        parameters.append(parameter.replace(default=default))

    @functools.wraps(func)
    def command(*args, **kwargs):
        return func(*args, **kwargs)

    command.__signature__ = signature.replace(parameters=parameters)
    return command
