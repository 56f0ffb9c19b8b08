"""The typer-free parser of the hot commands gives what click gives, and leaves to typer what it is unsure of."""

from __future__ import annotations

import importlib

import pytest
import typer

from sandbox.cli import fast

ACCEPTED = [
    ("ps", []),
    ("ps", ["-a"]),
    ("ps", ["-aq"]),
    ("ps", ["--all", "--quiet"]),
    ("ps", ["-n", "3"]),
    ("ps", ["-n3"]),
    ("ps", ["--last=2", "--no-trunc", "-l"]),
    ("ps", ["--filter", "name=x", "-f", "status=running", "-fancestor=bb"]),
    ("ps", ["--format", "json"]),
    ("ps", ["--format=json", "-a"]),
    ("rm", ["x"]),
    ("rm", ["-f", "x", "y"]),
    ("rm", ["x", "-f"]),
    ("rm", ["-fv", "x"]),
    ("rm", ["--force", "--", "-weird"]),
    ("run", ["img"]),
    ("run", ["--rm", "--network", "none", "img", "/bin/true"]),
    ("run", ["-dit", "--name", "web", "img", "sh", "-c", "echo -x"]),
    ("run", ["-e", "A=1", "-eB=2", "--env=C=3", "--env", "D", "img"]),
    ("run", ["-v", "/a:/b:ro", "-w", "/tmp", "img", "ls", "-l"]),
    ("run", ["--network=host", "-h", "host1", "--net", "none", "img"]),
    ("run", ["img", "--rm", "-it"]),
    ("run", ["-u", "1000:1000", "--init", "--", "img", "x"]),
    ("run", ["--read-only", "--tmpfs", "/run", "--mount", "type=tmpfs,dst=/x", "--entrypoint", "", "img"]),
    ("run", ["--pull", "never", "--platform", "linux/amd64", "--detach-keys", "ctrl-a", "-i", "img", "-"]),
    ("run", ["-e", "-x", "img"]),
    ("stop", ["-t", "5", "c"]),
    ("stop", ["-t5", "c", "d", "--signal=TERM"]),
    ("kill", ["-s", "HUP", "c"]),
    ("kill", ["c", "-sINT"]),
    ("start", ["-ai", "c"]),
    ("start", ["--detach-keys", "ctrl-a", "c"]),
    ("logs", ["-f", "--tail", "10", "c"]),
    ("logs", ["-t", "--since", "5m", "c"]),
    ("logs", ["-n", "3", "c"]),
    ("wait", ["a", "b"]),
    ("run", ["-m", "64m", "--memory-swap=-1", "--cpus", "0.5", "-c", "512", "--pids-limit", "-1", "img"]),
    ("run", ["--ulimit", "nofile=5:6", "--ulimit", "core=0", "--cpuset-cpus", "0-1", "--limits=best-effort", "img"]),
    ("exec", ["c", "true"]),
    ("exec", ["-it", "c", "sh"]),
    ("exec", ["-e", "X=1", "-w", "/", "-u", "nobody", "c", "id", "-u"]),
    ("exec", ["-d", "--detach-keys=ctrl-x,x", "c", "sleep", "1"]),
    ("images", []),
    ("images", ["-q", "--no-trunc", "busybox"]),
    ("images", ["--digests", "-f", "reference=bb*", "--format=json", "-a"]),
    ("images", ["--format", "table {{.Repository}}\\t{{.Tag}}"]),
    ("ps", ["-a", "--format={{.Names}}"]),
    ("version", []),
    ("version", ["-f", "{{.Client.Version}}"]),
    ("version", ["--format", "json"]),
    ("rmi", ["-f", "a", "b"]),
    ("tag", ["a", "b:1"]),
    ("attach", ["c"]),
    ("attach", ["--no-stdin", "--sig-proxy=false", "--detach-keys", "", "c"]),
]

DECLINED = [
    ("ps", ["--help"]),
    ("ps", ["-z"]),
    ("ps", ["--all=1"]),
    ("ps", ["-n"]),
    ("ps", ["-n", "three"]),
    ("ps", ["stray"]),
    ("rm", []),
    ("rm", ["--forc", "x"]),
    ("run", []),
    ("run", ["--nope", "img"]),
    ("run", ["--name"]),
    ("run", ["img", "--help"]),
    ("stop", ["-t", "x", "c"]),
    ("logs", ["a", "b"]),
    ("exec", ["c"]),
    ("tag", ["a"]),
    ("images", ["a", "b"]),
    ("version", ["extra"]),
    ("version", ["--format"]),
]


def _function(name: str):
    module, attr, interspersed = fast.COMMANDS[name]
    return getattr(importlib.import_module(module), attr), interspersed


def _click_params(name: str, args: list[str]) -> dict:
    from sandbox.cli.app import app

    command = typer.main.get_command(app).commands[name]
    with command.make_context(name, list(args)) as context:
        params = dict(context.params)
    return {key: list(value) if isinstance(value, tuple) else value for key, value in params.items()}


def _normal(values: dict) -> dict:
    """click gives None for an optional list argument left empty; the commands read it as `args or []`."""
    return {key: [] if value is None and key == "args" else value for key, value in values.items()}


@pytest.mark.parametrize(("name", "args"), ACCEPTED, ids=lambda value: " ".join(value) if isinstance(value, list)
                         else value)
def test_the_fast_parse_is_clicks(name: str, args: list[str]) -> None:
    function, interspersed = _function(name)
    assert _normal(fast.parse(function, args, interspersed=interspersed)) == _normal(_click_params(name, args))


@pytest.mark.parametrize(("name", "args"), DECLINED, ids=lambda value: " ".join(value) if isinstance(value, list)
                         else value)
def test_what_it_is_unsure_of_goes_to_typer(name: str, args: list[str], monkeypatch) -> None:
    function, _ = _function(name)
    called = []
    module = importlib.import_module(fast.COMMANDS[name][0])
    monkeypatch.setattr(module, fast.COMMANDS[name][1], _Wrapped(function, called))
    assert fast.dispatch([name, *args]) is False
    assert called == []


def test_click_refuses_what_it_declines_but_help() -> None:
    """The declined lines are click's usage errors (so nothing the fast path turns down would have run)."""
    import click

    for name, args in DECLINED:
        if "--help" in args:
            continue
        with pytest.raises(click.UsageError):
            _click_params(name, args)


def test_dispatch_runs_the_command_and_the_container_spelling(monkeypatch) -> None:
    from sandbox.cli import containers

    calls = []
    monkeypatch.setattr(containers, "ps", _Wrapped(containers.ps, calls))
    assert fast.dispatch(["ps", "-a"]) is True
    assert fast.dispatch(["container", "ls", "-q"]) is True
    assert [(call["all_containers"], call["quiet"]) for call in calls] == [(True, False), (False, True)]


def test_not_a_hot_command() -> None:
    assert fast.dispatch([]) is False
    assert fast.dispatch(["search", "x"]) is False
    assert fast.dispatch(["--debug", "ps"]) is False
    assert fast.dispatch(["container", "prune"]) is False
    assert fast.dispatch(["image", "inspect", "x"]) is False


def test_a_command_not_declared_with_params_goes_to_typer() -> None:
    def legacy(all_containers: bool = typer.Option(False, "--all")) -> None:
        raise AssertionError("not called")

    with pytest.raises(fast._Unsure):
        fast.parse(legacy, ["--all"], interspersed=True)


class _Wrapped:
    """Looks like the command to the parser (same declaration), records the call instead of running it."""

    def __init__(self, function, calls: list) -> None:
        self.__code__ = function.__code__
        self.__defaults__ = function.__defaults__
        self.__annotations__ = function.__annotations__
        self.calls = calls

    def __call__(self, **kwargs) -> None:
        self.calls.append(kwargs)
