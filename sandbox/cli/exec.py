"""`sbx exec`: Docker's flags, the terminal or the signals, and Docker's exit codes (1, 126, 127, the command's)."""

from __future__ import annotations

import typer


def exec_command(
    container: str = typer.Argument(..., metavar="CONTAINER"),
    args: list[str] = typer.Argument(..., metavar="COMMAND [ARG...]"),
    interactive: bool = typer.Option(False, "--interactive", "-i", help="Keep STDIN open."),
    tty: bool = typer.Option(False, "--tty", "-t", help="Allocate a pseudo-TTY."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Detached mode: run command in the background."),
    env: list[str] = typer.Option([], "--env", "-e", help="Set environment variables."),
    workdir: str = typer.Option(None, "--workdir", "-w", help="Working directory inside the container."),
    user: str = typer.Option(None, "--user", "-u", help="Username or UID (format: <name|uid>[:<group|gid>])."),
) -> None:
    """Execute a command in a running container."""
    from sandbox.config import load_settings
    from sandbox.service.execution import ExecOptions, Execution

    options = ExecOptions(
        env=list(env), workdir=workdir, user=user, interactive=interactive, tty=tty, detach=detach,
    )
    code = Execution(load_settings()).exec(container, list(args), options, attach=_attach)
    raise typer.Exit(code)


def _attach(started, request) -> int:
    from sandbox.cli.run import drive

    return drive(started, request.interactive)


def register(app: typer.Typer, container_group: typer.Typer) -> None:
    settings = {"allow_interspersed_args": False}
    app.command("exec", context_settings=settings)(exec_command)
    container_group.command("exec", context_settings=settings)(exec_command)
