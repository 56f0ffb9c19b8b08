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
    if args in (["--version"], ["-v"]):
        from sandbox import __version__

        sys.stdout.write(f"sbx version {__version__}\n")
        return
    from sandbox.errors import SbxError

    debug = os.environ.get("SBX_DEBUG") == "1" or "--debug" in args or "-D" in args
    try:
        from sandbox.cli.fast import dispatch

        try:
            handled = dispatch(args)
        except SystemExit as leaving:
            if argv is not None:
                raise
            _exit_now(leaving.code)
        if handled:
            if argv is None:
                _exit_now(0)
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


def _exit_now(code: object) -> None:
    """End the process as SystemExit(code) would, without Python's finalization.

    Tearing down the ~200 modules a container command loaded costs it 5-10 ms (BENCHMARKS B1-B3): the hot
    commands leave with ``os._exit`` once their output is flushed. They hold nothing that needs finalizers: their
    files are closed by ``with``, their locks die with the process, and their children are their monitors'.
    """
    status = code if isinstance(code, int) else 0 if code is None else 1
    if isinstance(code, str):
        sys.stderr.write(code + "\n")
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        status = 141
    os._exit(status)


def report(exc) -> int:
    """Render one SbxError as one line; returns the exit code."""
    from sandbox.cli.render import err, escape  # here: `--version` and the hot commands need no rendering

    message = escape(exc.message)
    if exc.hint:
        message += f": {escape(exc.hint)}"
    err(f"sbx: {message}")
    return getattr(exc, "exit_code", None) or 1
