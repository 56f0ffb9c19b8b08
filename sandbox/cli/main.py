"""The `sbx` command: the typer application and the one place where errors become a line and an exit code.

Library code raises typed :class:`~sandbox.errors.SbxError`; :func:`main` renders it once as
``sbx: message: hint`` on stderr and exits 1 (a command may choose another code, as `run` does with 125).
``--debug`` (or ``SBX_DEBUG=1``) shows the traceback too.
"""

from __future__ import annotations

import os
import sys

import typer

from sandbox import __version__
from sandbox.cli import images, system
from sandbox.cli.render import err, escape

app = typer.Typer(
    name="sbx",
    help="Rootless, daemonless, Docker-compatible sandboxes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"sbx version {__version__}\n")
        raise typer.Exit()


@app.callback()
def root(
    debug: bool = typer.Option(False, "--debug", "-D", help="Show tracebacks of errors."),
    version: bool = typer.Option(
        False, "--version", "-v", callback=_version, is_eager=True, help="Print version information and quit."
    ),
) -> None:
    if debug:
        os.environ["SBX_DEBUG"] = "1"


@app.command("version")
def version_command() -> None:
    """Show the sbx version."""
    sys.stdout.write(f"sbx version {__version__}\n")


images.register(app)
system.register(app)


def main(argv: list[str] | None = None) -> None:
    from sandbox.errors import SbxError

    debug = os.environ.get("SBX_DEBUG") == "1" or "--debug" in (argv or sys.argv[1:]) or "-D" in (argv or sys.argv[1:])
    try:
        app(args=argv, prog_name="sbx")
    except SbxError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        sys.exit(report(exc))
    except KeyboardInterrupt:
        err("sbx: interrupted")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
    except OSError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        where = f" {exc.filename}" if exc.filename else ""
        err(f"sbx: {escape(exc.strerror or str(exc))}{escape(where)}")
        sys.exit(1)


def report(exc) -> int:
    """Render one SbxError as one line; returns the exit code."""
    message = escape(exc.message)
    if exc.hint:
        message += f": {escape(exc.hint)}"
    err(f"sbx: {message}")
    return getattr(exc, "exit_code", None) or 1
