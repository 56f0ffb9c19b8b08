"""The hot commands without typer: parse their common invocations directly from the commands' own declarations.

The rows of the command table (:mod:`sandbox.cli.commands`) marked ``fast`` are parsed here, the global options
before the command name too (:func:`split_global_options`); typer's application is built from the same table.

`sbx run`, `exec`, `ps`, `rm`, `images` and the other container and image commands are run again and again by
scripts and CI; importing typer and click and building the application around 60 commands costs them ~60 ms each
(BENCHMARKS B1-B3, B11).
:func:`dispatch` parses argv with the parameters each command declares through :mod:`sandbox.cli.params` (the same
declaration typer reads), following click's rules, and calls the command. It handles only what it is sure of: an
unknown option, ``--help``, a missing argument, a value that is not a number, anything else unusual, and
:func:`dispatch` returns False without having run anything, so typer parses the line again and gives its usage,
help or error, exactly as before.

click's rules, as followed here: options and arguments may be interleaved, unless the command stops at its first
argument (`run`, `exec`: what follows is the container's command); ``--`` ends the options; ``--name=value``;
``-abc`` is three flags, and a short option that takes a value takes the rest of its token, else the next token
whatever it looks like; an option given twice keeps its last value unless it is a list; no abbreviations.
"""

from __future__ import annotations

from sandbox.cli.commands import find, global_options
from sandbox.cli.params import Param

_TYPES = ("bool", "int", "str", "list[str]")


class Unsure(Exception):
    """Something the fast path leaves to typer."""


def dispatch(args: list[str]) -> bool:
    """Run ``args`` (argv without the program and the global options) if it is a hot command this parser is sure
    of; False otherwise."""
    call = resolve(args)
    if call is None:
        return False
    function, kwargs = call
    function(**kwargs)
    return True


def resolve(args: list[str]) -> tuple[object, dict[str, object]] | None:
    """The function ``args`` (argv without the program and the global options) calls, and its keyword arguments;
    None where typer must decide."""
    found = find(args)
    if found is None or not found[0].fast or "--help" in found[1]:  # help, even a container's argument: typer's
        return None
    command, rest = found
    function = command.load()
    try:
        return function, parse(function, rest, interspersed=command.interspersed)
    except Unsure:
        return None


def split_global_options(args: list[str]) -> tuple[dict[str, object], list[str]]:
    """The global options before the command name (as click's group reads them), and the rest of ``args``;
    raises Unsure where click would complain."""
    return _options(global_options, args, interspersed=False)


def parse(function, args: list[str], *, interspersed: bool) -> dict[str, object]:
    """The keyword arguments ``function`` is called with for ``args``; raises Unsure where click would complain."""
    values, positional = _options(function, args, interspersed=interspersed)
    _assign(function, positional, values)
    return values


def _declared(function) -> tuple[dict[str, object], dict[str, str]]:
    """The function's parameters with their defaults (the Param records), and their annotations."""
    code = function.__code__
    return dict(zip(code.co_varnames[: code.co_argcount], function.__defaults__ or (), strict=True)), \
        function.__annotations__


def _options(function, args: list[str], *, interspersed: bool) -> tuple[dict[str, object], list[str]]:
    """The declared options' values (defaults for those not given) and the positional values, in order."""
    declared, annotations = _declared(function)
    options: dict[str, str] = {}  # "--all" / "-a" -> parameter name
    values: dict[str, object] = {}
    for name, param in declared.items():
        if not isinstance(param, Param) or annotations.get(name) not in _TYPES:
            raise Unsure(name)
        if param.kind == "argument" and annotations[name] not in ("str", "list[str]"):
            raise Unsure(name)
        if param.kind == "option":
            for flag in param.names:
                options[flag] = name
            values[name] = list(param.default) if annotations[name] == "list[str]" else param.default
    positional: list[str] = []
    index = 0
    while index < len(args):
        token = args[index]
        index += 1
        if token == "--":
            positional += args[index:]
            break
        if not token.startswith("-") or token == "-":
            positional.append(token)
            if not interspersed:
                positional += args[index:]
                break
            continue
        if token.startswith("--"):
            flag, eq, value = token.partition("=")
            name = options.get(flag)
            if name is None:
                raise Unsure(flag)
            if annotations[name] == "bool":
                if eq:
                    raise Unsure(token)
                values[name] = True
                continue
            if not eq:
                value, index = _next(args, index, token)
            _store(values, name, annotations[name], value)
            continue
        for at, char in enumerate(token[1:], start=1):
            name = options.get("-" + char)
            if name is None:
                raise Unsure(token)
            if annotations[name] == "bool":
                values[name] = True
                continue
            value = token[at + 1:]
            if not value:
                value, index = _next(args, index, token)
            _store(values, name, annotations[name], value)
            break
    _convert(values, annotations)
    return values, positional


def _next(args: list[str], index: int, token: str) -> tuple[str, int]:
    """The option's value from the next token, whatever it looks like (click's rule); none left: a usage error."""
    if index >= len(args):
        raise Unsure(token)
    return args[index], index + 1


def _store(values: dict[str, object], name: str, kind: str, value: str) -> None:
    if kind == "list[str]":
        values[name].append(value)
    else:
        values[name] = value  # an int is converted once parsing is done: click converts only the last value


def _convert(values: dict[str, object], annotations: dict[str, str]) -> None:
    for name, value in values.items():
        if annotations[name] == "int" and isinstance(value, str):
            try:
                values[name] = int(value)
            except ValueError:
                raise Unsure(value) from None


def _assign(function, positional: list[str], values: dict) -> None:
    """Positional values to the arguments in order; a list argument (the last) takes the rest."""
    declared, annotations = _declared(function)
    arguments = [name for name, param in declared.items() if param.kind == "argument"]
    for name in arguments:
        required = declared[name].default is ...
        if annotations[name] == "list[str]":
            if required and not positional:
                raise Unsure(name)
            values[name] = list(positional)
            positional = []
            continue
        if not positional:
            if required:
                raise Unsure(name)
            values[name] = declared[name].default
            continue
        values[name] = positional.pop(0)
    if positional:
        raise Unsure(positional[0])
