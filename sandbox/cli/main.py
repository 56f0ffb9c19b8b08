"""The `sbx` entry point: the one place where errors become a line and an exit code.

Library code raises typed :class:`~sandbox.errors.SbxError`; :func:`main` renders it once as
``sbx: message: hint`` on stderr and exits 1 (a command may choose another code, as `run` does with 125).
``--debug`` (or ``SBX_DEBUG=1``) shows the traceback too. The typer application is imported only when a command
needs it, so `sbx --version` costs little more than Python's own start (BENCHMARKS B3), and the hot container
commands are parsed without it (:mod:`sandbox.cli.fast`).
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-v"], ["version"]):
        from sandbox import __version__

        sys.stdout.write(f"sbx version {__version__}\n")
        return
    from sandbox.errors import SbxError

    debug = os.environ.get("SBX_DEBUG") == "1" or "--debug" in args or "-D" in args
    try:
        from sandbox.cli.fast import dispatch

        if dispatch(args):
            return
        from sandbox.cli.app import app

        app(args=args, prog_name="sbx")
    except SbxError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        sys.exit(report(exc))
    except KeyboardInterrupt:
        from sandbox.cli.render import err

        err("sbx: interrupted")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
    except OSError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        where = f" {exc.filename}" if exc.filename else ""
        from sandbox.cli.render import err, escape

        err(f"sbx: {escape(exc.strerror or str(exc))}{escape(where)}")
        sys.exit(1)


def report(exc) -> int:
    """Render one SbxError as one line; returns the exit code."""
    from sandbox.cli.render import err, escape  # here: `--version` and the hot commands need no rendering

    message = escape(exc.message)
    if exc.hint:
        message += f": {escape(exc.hint)}"
    err(f"sbx: {message}")
    return getattr(exc, "exit_code", None) or 1
