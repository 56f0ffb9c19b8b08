"""`sbx exec`: Docker's flags, the terminal or the signals, and Docker's exit codes (1, 126, 127, the command's)."""

from __future__ import annotations

from sandbox.cli.params import Argument, Option


def exec_command(
    container: str = Argument(..., metavar="CONTAINER"),
    args: list[str] = Argument(..., metavar="COMMAND [ARG...]"),
    interactive: bool = Option(False, "--interactive", "-i", help="Keep STDIN open."),
    tty: bool = Option(False, "--tty", "-t", help="Allocate a pseudo-TTY."),
    detach: bool = Option(False, "--detach", "-d", help="Detached mode: run command in the background."),
    detach_keys: str = Option(None, "--detach-keys", help="Override the key sequence for detaching."),
    env: list[str] = Option([], "--env", "-e", help="Set environment variables."),
    workdir: str = Option(None, "--workdir", "-w", help="Working directory inside the container."),
    user: str = Option(None, "--user", "-u", help="Username or UID (format: <name|uid>[:<group|gid>])."),
) -> None:
    """Execute a command in a running container."""
    import functools

    from sandbox.cli.attach import detach_key_bytes
    from sandbox.config import load_settings
    from sandbox.service.execution import ExecOptions, Execution

    settings = load_settings()
    keys = detach_key_bytes(detach_keys, settings)  # a bad --detach-keys fails before anything runs
    options = ExecOptions(
        env=list(env), workdir=workdir, user=user, interactive=interactive, tty=tty, detach=detach,
    )
    if tty and not detach:
        from sandbox.cli.attach import terminal_size

        options.console_size = terminal_size()
    code = Execution(settings).exec(container, list(args), options,
                                    attach=functools.partial(_attach, detach_keys=keys))
    raise SystemExit(code)


def _attach(handle, request, detach_keys: bytes | None = None) -> int:
    """Drive an exec'ed command (see ``Execution.exec``); the exit code sbx leaves with.

    Without a tty ``handle`` is the command and the relay of its pipes: sbx copies its stdio through them,
    forwards signals and waits for the exit code. With a tty ``handle`` is the exec holder's session: sbx
    attaches to it as to a container's monitor, and the detach keys (``detach_keys``; None: the config's, else
    Ctrl-p Ctrl-q; b"" never) leave the command running, print "read escape sequence" and return 0.
    """
    import os
    import sys

    if not request.tty:
        return _wait(handle)
    from sandbox.cli.attach import attach_streams, detach_key_bytes
    from sandbox.exitcodes import CANNOT_RUN
    from sandbox.monitor import attach as protocol

    if detach_keys is None:
        from sandbox.config import load_settings

        detach_keys = detach_key_bytes(None, load_settings())
    user_tty = request.interactive and os.isatty(sys.stdin.fileno())
    outcome, code = attach_streams(pid=handle.pid, tty=True, stdin=request.interactive, keys=detach_keys,
                                   sock=handle.sock, forward_signals=not user_tty)
    if outcome == "detached":
        return 0
    if code is None:
        raise protocol.AttachError(
            "the exec session ended without the command's exit code", exit_code=CANNOT_RUN,
            hint="its holder went away, or dropped this terminal for falling too far behind; "
            "`sbx exec CONTAINER ps` shows whether the command still runs",
        )
    return code


def _wait(handle) -> int:
    """Without -t: copy between sbx's stdio and the command's pipes, forward the signals sbx gets, and wait for
    the command's exit code."""
    from sandbox.runtime import console, launcher

    restore = console.forward_signals(handle.started.container_pid)
    try:
        handle.relay.run(handle.started.stage1)
        return launcher.wait(handle.started)
    finally:
        restore()
