"""One command table, two parsers: the typer-free one gives the call click gives, or leaves the line to typer
only where click refuses it; global options are read before the command name only."""

from __future__ import annotations

import functools
import inspect
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sandbox.cli import commands, fast
from sandbox.cli.main import main
from sandbox.cli.params import Param

FAST = [(spelling, command) for command in commands.COMMANDS if command.fast for spelling in command.spellings]
VALUES = ["x", "img", "1", "-1", "0", "3x", " 7", "", "--", "-", "-e", "--rm", "a=b", "ctrl-a", "name=web"]
WORDS = ["img", "c", "sh", "-", "", "a b", "true", "x=1"]
STRAYS = ["--", "--nope", "-z", "--forc", "--all=1", "--debug", "-D", "--storage-driver"]


@functools.cache
def _root() -> click.Group:
    from sandbox.cli.app import app

    return typer.main.get_command(app)


def click_call(argv: list[str]):
    """What click makes of ``argv``: (global options, the command's function, its parameters), or the UsageError."""
    command = _root()
    try:
        context = command.make_context("sbx", list(argv))
        global_values = _globals(context.params)
        while isinstance(command, click.Group):
            protected = getattr(context, "_protected_args", None)
            if protected is None:
                protected = context.protected_args
            name, command, rest = command.resolve_command(context, [*protected, *context.args])
            context = command.make_context(name, rest, parent=context)
    except click.UsageError as error:
        return error
    return global_values, inspect.unwrap(command.callback), _normal(context.params)


def fast_call(argv: list[str]):
    """What sbx's fast path makes of ``argv`` (as main and dispatch read it); None: left to typer."""
    try:
        global_values, rest = fast.split_global_options(argv)
    except fast.Unsure:
        return None
    call = fast.resolve(rest)
    if call is None:
        return None
    function, kwargs = call
    return _globals(global_values), function, _normal(kwargs)


def _globals(values: dict) -> dict:
    """--version is main's (it prints and leaves before any command; click keeps its callback's None)."""
    return {key: value for key, value in values.items() if key != "version"}


def _normal(values: dict) -> dict:
    """click gives tuples for lists, and None for an optional list argument left empty (read as `args or []`)."""
    values = {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}
    return {key: [] if value is None and key == "args" else value for key, value in values.items()}


def _declared(function) -> list[tuple[str, Param]]:
    parameters = inspect.signature(function).parameters.values()
    return [(parameter.name, parameter.default) for parameter in parameters if isinstance(parameter.default, Param)]


@st.composite
def command_lines(draw) -> list[str]:
    """Global options, a hot command's spelling, then its options (every spelling, with and without values,
    clustered), positional words, ``--``, unknown and global flags, in any order."""
    argv: list[str] = []
    for _ in range(draw(st.integers(0, 2))):
        argv += draw(st.sampled_from([["--debug"], ["-D"], ["--storage-driver", "copy"], ["--storage-driver=x"],
                                      ["-D", "--storage-driver", "-D"]]))
    spelling, command = draw(st.sampled_from(FAST))
    argv += list(spelling)
    declared = _declared(command.load())
    options = [(name, param) for name, param in declared if param.kind == "option"]
    annotations = command.load().__annotations__
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["option", "option", "cluster", "word", "word", "stray"]))
        if kind == "word" or not options:
            argv.append(draw(st.sampled_from(WORDS)))
        elif kind == "stray":
            argv.append(draw(st.sampled_from(STRAYS)))
        elif kind == "cluster":
            shorts = [param.names for _, param in options]
            letters = [flag[1] for names in shorts for flag in names if len(flag) == 2]
            if letters:
                cluster = "-" + "".join(draw(st.lists(st.sampled_from(letters), min_size=1, max_size=3)))
                argv.append(cluster + draw(st.sampled_from(["", "", "v1"])))
        else:
            name, param = draw(st.sampled_from(options))
            flag = draw(st.sampled_from(param.names))
            if annotations[name] == "bool":
                argv.append(flag + draw(st.sampled_from(["", "", "", "=1"])))
            else:
                value = draw(st.sampled_from(VALUES))
                form = draw(st.sampled_from(["next", "joined", "missing"]))
                if form == "joined":
                    argv.append(f"{flag}={value}" if flag.startswith("--") else flag + value)
                elif form == "missing":
                    argv.append(flag)
                else:
                    argv += [flag, value]
    return argv


@settings(max_examples=600, deadline=None)
@given(command_lines())
@example(["ps", "-aq"])
@example(["run", "-dit", "--name", "web", "img", "sh", "-c", "echo -x"])
@example(["run", "img", "sh", "--debug"])
@example(["--debug", "run", "--rm", "img", "true"])
@example(["-D", "--storage-driver=copy", "container", "ls", "-a"])
@example(["rm", "--force", "--", "-weird"])
@example(["exec", "-e", "X=1", "c", "id", "-u"])
@example(["stop", "-t", "x", "c"])
@example(["image", "rm", "-f", "a", "b"])
def test_the_fast_parser_gives_clicks_call_or_leaves_clicks_error_to_typer(argv: list[str]) -> None:
    expected = click_call(argv)
    got = fast_call(argv)
    if got is None:
        assert isinstance(expected, click.UsageError), f"left to typer, but click accepts {argv}: {expected}"
    else:
        assert got == expected


def test_every_spelling_in_the_table_is_typers_command_and_nothing_else_is() -> None:
    spellings = {}

    def walk(command, path):
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        else:
            spellings[path] = command

    walk(_root(), ())
    table = {spelling: command for command in commands.COMMANDS for spelling in command.spellings}
    assert set(spellings) == set(table)
    for spelling, command in table.items():
        built = spellings[spelling]
        assert built.hidden == command.hidden
        assert built.context_settings.get("allow_interspersed_args", True) == command.interspersed
        if not command.factory:
            assert inspect.unwrap(built.callback) is command.load(), spelling


def test_help_and_commands_not_marked_fast_go_to_typer() -> None:
    assert fast.dispatch([]) is False
    assert fast.dispatch(["search", "x"]) is False
    assert fast.dispatch(["ps", "--help"]) is False
    assert fast.dispatch(["run", "img", "--help"]) is False
    assert fast.dispatch(["container", "prune"]) is False
    assert fast.dispatch(["image", "inspect", "x"]) is False
    assert fast.dispatch(["--debug", "ps"]) is False  # main takes the global options off first


def test_a_command_not_declared_with_params_goes_to_typer() -> None:
    def legacy(all_containers: bool = typer.Option(False, "--all")) -> None:
        raise AssertionError("not called")

    with pytest.raises(fast.Unsure):
        fast.parse(legacy, ["--all"], interspersed=True)


def test_hot_modules_do_not_import_typer() -> None:
    """The fast rows' modules load, and their lines parse, without typer or click (~60 ms of a container start)."""
    code = ("import sys; from sandbox.cli import commands, fast\n"
            "for command in commands.COMMANDS:\n"
            "    command.load() if command.fast else None\n"
            "assert fast.resolve(['run', '--rm', 'img', 'true']) is not None\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'click', 'rich')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "[]", result.stderr


# --- main: global options before the command name only, and the exit code of an error ------------------------


@pytest.fixture
def calls(monkeypatch) -> list:
    """`run` and `ps` replaced by recorders (same declarations) that raise what the test puts in ``raises``."""
    from sandbox.cli import containers, run

    monkeypatch.setenv("SBX_DEBUG", "0")  # restored (unset) after the test: main sets it for --debug
    monkeypatch.delenv("SBX_STORAGE_DRIVER", raising=False)
    recorded: list = []
    monkeypatch.setattr(run, "run", _Wrapped(run.run, recorded))
    monkeypatch.setattr(containers, "ps", _Wrapped(containers.ps, recorded))
    return recorded


def test_debug_after_the_command_name_is_the_containers(calls, capsys) -> None:
    from sandbox.errors import ImageNotFound

    _Wrapped.raises = ImageNotFound("no such image: img")
    with pytest.raises(SystemExit) as leaving:
        main(["run", "img", "sh", "--debug"])
    assert calls[0]["args"] == ["sh", "--debug"]
    assert os.environ["SBX_DEBUG"] == "0"
    assert "Traceback" not in capsys.readouterr().err
    assert leaving.value.code == 125


def test_debug_before_the_command_name_is_sbxs(calls, capsys) -> None:
    from sandbox.errors import ImageNotFound

    _Wrapped.raises = ImageNotFound("no such image: img")
    with pytest.raises(SystemExit):
        main(["--debug", "--storage-driver", "copy", "run", "img", "sh"])
    assert calls[0]["args"] == ["sh"]
    assert os.environ["SBX_DEBUG"] == "1"
    assert os.environ["SBX_STORAGE_DRIVER"] == "copy"
    assert "Traceback" in capsys.readouterr().err


def test_version_before_the_command_name(calls, capsys) -> None:
    main(["-D", "--version", "ps"])
    assert capsys.readouterr().out.startswith("sbx version ")
    assert calls == []


@pytest.mark.parametrize(("argv", "error", "code"), [
    (["run", "img"], "ImageNotFound", 125),  # Docker: sbx could not run the container
    (["container", "run", "img"], "ImageNotFound", 125),
    (["ps"], "ConfigError", 1),
    (["run", "img"], "ContainerNotRunning", 1),  # an error with its own code keeps it
])
def test_an_errors_exit_code_is_its_own_else_the_commands(calls, capsys, argv, error, code) -> None:
    import sandbox.errors

    raised = getattr(sandbox.errors, error)("it failed")
    if error == "ContainerNotRunning":
        raised.exit_code = 1
    _Wrapped.raises = raised
    with pytest.raises(SystemExit) as leaving:
        main(argv)
    assert leaving.value.code == code
    assert capsys.readouterr().err == "sbx: it failed\n"


def test_a_start_error_carries_docker_s_code() -> None:
    from sandbox.errors import ContainerStartError, SbxError
    from sandbox.exitcodes import CANNOT_RUN, NOT_FOUND

    assert ContainerStartError("x").exit_code == CANNOT_RUN
    assert ContainerStartError("x", exit_code=NOT_FOUND).exit_code == NOT_FOUND
    assert SbxError("x").exit_code is None


class _Wrapped:
    """Looks like the command to the parser (same declaration), records the call instead of running it."""

    raises: BaseException | None = None

    def __init__(self, function, calls: list) -> None:
        self.__code__ = function.__code__
        self.__defaults__ = function.__defaults__
        self.__annotations__ = function.__annotations__
        self.calls = calls
        _Wrapped.raises = None

    def __call__(self, **kwargs) -> None:
        self.calls.append(kwargs)
        if _Wrapped.raises is not None:
            raise _Wrapped.raises
