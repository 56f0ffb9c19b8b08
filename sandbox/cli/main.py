"""The `sbx` entry point: the one place where errors become a line and an exit code.

Library code raises typed :class:`~sandbox.errors.SbxError`; :func:`main` renders it once as
``sbx: message: hint`` on stderr and exits with the error's ``exit_code``, else with the command's failure code
from the command table (1; 125 for `run` and `create`, as Docker): the codes are :mod:`sandbox.exitcodes`.
``--debug`` before the command name (or ``SBX_DEBUG=1``) shows the traceback too; after it, ``--debug`` is the
command's (``sbx run IMG sh --debug`` gives it to sh). The typer application is imported only when a command
needs it, so `sbx --version` costs little more than Python's own start (BENCHMARKS B3), and the hot container
commands are parsed without it (:mod:`sandbox.cli.fast`).
"""

from __future__ import annotations

import gc
import os
import sys

from sandbox.exitcodes import BROKEN_PIPE, INTERRUPTED, SBX_ERROR

# A command allocates some 100,000 objects while it imports and builds its classes, almost none of them garbage:
# at Python's default (a young collection every 700) that is ~150 collections walking them, 4-5 ms of `sbx run`
# (BENCHMARKS B1). Collections still happen, every GC_THRESHOLD allocations, so memory stays bounded in the long
# lived processes a command becomes (an attached run, the monitor it forks, the API service).
GC_THRESHOLD = 20_000


def main(argv: list[str] | None = None) -> None:
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-v"]):
        from sandbox import __version__

        sys.stdout.write(f"sbx version {__version__}\n")
        return
    from sandbox.errors import SbxError

    command_args = args
    try:
        from sandbox.cli import commands, fast

        try:
            global_values, command_args = fast.split_global_options(args)
        except fast.Unsure:  # typer gives the usage error
            global_values = None
        if global_values is not None and global_values["version"]:
            main(["--version"])
            return
        try:
            handled = False
            if global_values is not None:
                commands.global_options(**{**global_values, "version": False})
                handled = fast.dispatch(command_args)
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
        if _debug():
            import traceback

            traceback.print_exc()
        from sandbox.cli.commands import failure_code

        sys.exit(report(exc, failure_code(command_args)))
    except KeyboardInterrupt:
        from sandbox.cli.render import err

        err("sbx: interrupted")
        sys.exit(INTERRUPTED)
    except BrokenPipeError:
        sys.exit(BROKEN_PIPE)
    except OSError as exc:
        if _debug():
            import traceback

            traceback.print_exc()
        where = f" {exc.filename}" if exc.filename else ""
        from sandbox.cli.render import err, escape

        err(f"sbx: {escape(exc.strerror or str(exc))}{escape(where)}")
        sys.exit(SBX_ERROR)


def _debug() -> bool:
    """Whether tracebacks are wanted: ``--debug`` before the command name (either parser puts it in the
    environment, see :func:`sandbox.cli.commands.global_options`) or ``SBX_DEBUG=1``."""
    return os.environ.get("SBX_DEBUG") == "1"


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
        status = BROKEN_PIPE
    os._exit(status)


def report(exc, failure_code: int = SBX_ERROR) -> int:
    """Render one SbxError as one line; returns the exit code: the error's own, else ``failure_code``."""
    from sandbox.cli.render import err, escape  # here: `--version` and the hot commands need no rendering

    message = escape(exc.message)
    if exc.hint:
        message += f": {escape(exc.hint)}"
    err(f"sbx: {message}")
    return exc.exit_code or failure_code
