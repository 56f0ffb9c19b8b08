"""The hot commands without typer: parse their common invocations directly from the commands' own declarations.

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

from sandbox.cli.params import Param

# command -> (module, function, whether options may follow arguments)
COMMANDS: dict[str, tuple[str, str, bool]] = {
    "run": ("sandbox.cli.run", "run", False),
    "exec": ("sandbox.cli.exec", "exec_command", False),
    "ps": ("sandbox.cli.containers", "ps", True),
    "rm": ("sandbox.cli.containers", "rm", True),
    "stop": ("sandbox.cli.containers", "stop", True),
    "kill": ("sandbox.cli.containers", "kill", True),
    "start": ("sandbox.cli.containers", "start", True),
    "wait": ("sandbox.cli.containers", "wait", True),
    "logs": ("sandbox.cli.containers", "logs", True),
    "attach": ("sandbox.cli.attach", "attach", True),
    "images": ("sandbox.cli.images", "images", True),
    "rmi": ("sandbox.cli.images", "rmi", True),
    "tag": ("sandbox.cli.images", "tag", True),
    "version": ("sandbox.cli.version", "version", True),
}
# `sbx container NAME` and `sbx image NAME` spell some of the same commands
GROUPS = {
    "container": {**{name: name for name in COMMANDS if name not in ("images", "rmi", "tag", "version")}, "ls": "ps",
                  "list": "ps"},
    "image": {"ls": "images", "list": "images", "rm": "rmi", "tag": "tag"},
}

_TYPES = ("bool", "int", "str", "list[str]")


class _Unsure(Exception):
    """Something the fast path leaves to typer."""


def dispatch(args: list[str]) -> bool:
    """Run ``args`` (argv without the program) if it is a hot command this parser is sure of; False otherwise."""
    if not args:
        return False
    name, rest = args[0], args[1:]
    if name in GROUPS and rest and rest[0] in GROUPS[name]:
        name, rest = GROUPS[name][rest[0]], rest[1:]
    if name not in COMMANDS or "--help" in rest:  # help, even where it is a container's argument: typer decides
        return False
    module_name, function_name, interspersed = COMMANDS[name]
    import importlib

    function = getattr(importlib.import_module(module_name), function_name)
    try:
        kwargs = parse(function, rest, interspersed=interspersed)
    except _Unsure:
        return False
    function(**kwargs)
    return True


def parse(function, args: list[str], *, interspersed: bool) -> dict[str, object]:
    """The keyword arguments ``function`` is called with for ``args``; raises _Unsure where click would complain."""
    code = function.__code__
    names = code.co_varnames[: code.co_argcount]
    declared = dict(zip(names, function.__defaults__ or (), strict=True))
    annotations = function.__annotations__
    options: dict[str, str] = {}  # "--all" / "-a" -> parameter name
    arguments: list[str] = []
    values: dict[str, object] = {}
    for name, param in declared.items():
        if not isinstance(param, Param) or annotations.get(name) not in _TYPES:
            raise _Unsure(name)
        if param.kind == "argument" and annotations[name] not in ("str", "list[str]"):
            raise _Unsure(name)
        if param.kind == "option":
            for flag in param.names:
                options[flag] = name
            values[name] = list(param.default) if annotations[name] == "list[str]" else param.default
        else:
            arguments.append(name)
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
                raise _Unsure(flag)
            if annotations[name] == "bool":
                if eq:
                    raise _Unsure(token)
                values[name] = True
                continue
            if not eq:
                value, index = _next(args, index, token)
            _store(values, name, annotations[name], value)
            continue
        for at, char in enumerate(token[1:], start=1):
            name = options.get("-" + char)
            if name is None:
                raise _Unsure(token)
            if annotations[name] == "bool":
                values[name] = True
                continue
            value = token[at + 1:]
            if not value:
                value, index = _next(args, index, token)
            _store(values, name, annotations[name], value)
            break
    _assign(declared, arguments, annotations, positional, values)
    return values


def _next(args: list[str], index: int, token: str) -> tuple[str, int]:
    """The option's value from the next token, whatever it looks like (click's rule); none left: a usage error."""
    if index >= len(args):
        raise _Unsure(token)
    return args[index], index + 1


def _store(values: dict[str, object], name: str, kind: str, value: str) -> None:
    if kind == "list[str]":
        values[name].append(value)
    elif kind == "int":
        try:
            values[name] = int(value)
        except ValueError:
            raise _Unsure(value) from None
    else:
        values[name] = value


def _assign(declared: dict, arguments: list[str], annotations: dict, positional: list[str], values: dict) -> None:
    """Positional values to the arguments in order; a list argument (the last) takes the rest."""
    for name in arguments:
        required = declared[name].default is ...
        if annotations[name] == "list[str]":
            if required and not positional:
                raise _Unsure(name)
            values[name] = list(positional)
            positional = []
            continue
        if not positional:
            if required:
                raise _Unsure(name)
            values[name] = declared[name].default
            continue
        values[name] = positional.pop(0)
    if positional:
        raise _Unsure(positional[0])
