"""`sbx attach`: the terminal (or stdin, stdout, stderr) of a running container, through its monitor's socket."""

from __future__ import annotations

import sys

from sandbox.cli.params import Argument, Option

_DETACHED_MESSAGE = "read escape sequence"  # what Docker prints on stderr after the detach keys


def detach_key_bytes(flag: str | None, settings) -> bytes:
    """--detach-keys, else the config's detach_keys, else Ctrl-p Ctrl-q; "" turns detaching off."""
    from sandbox.runtime import detachkeys

    if flag is None:
        flag = settings.detach_keys if settings.detach_keys is not None else detachkeys.DEFAULT_DETACH_KEYS
    return detachkeys.parse_detach_keys(flag)


def terminal_size() -> tuple[int, int] | None:
    """(rows, columns) of the terminal on sbx's stdout, for a container's -t (None: not a terminal, or 0x0)."""
    import os

    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except (OSError, ValueError):
        return None
    return (size.lines, size.columns) if size.lines and size.columns else None


def attach_streams(*, pid: int | None, tty: bool, stdin: bool, keys: bytes, forward_signals: bool,
                   path=None, sock=None, end_input: bool = False) -> tuple[str, int | None]:
    """sbx's stdin (when ``stdin``), stdout and stderr attached to a monitor or exec holder (at ``path``, or over
    ``sock`` already connected), with the signals sbx gets forwarded to ``pid`` meanwhile when ``forward_signals``
    (not with the user's terminal in raw mode: Ctrl-C is then a byte for the container's terminal). Says "read
    escape sequence" after the detach keys; returns ``(outcome, code)`` as :func:`sandbox.monitor.attach.attach`.
    """
    from sandbox.monitor import attach as protocol
    from sandbox.runtime import console

    restore = console.forward_signals(pid) if forward_signals and pid else (lambda: None)
    try:
        outcome, code = protocol.attach(
            path,
            stdin_fd=sys.stdin.fileno() if stdin else None,
            stdout_fd=sys.stdout.fileno(),
            stderr_fd=sys.stderr.fileno(),
            tty=tty,
            detach_keys=keys,
            sock=sock,
            end_input=end_input,
        )
    finally:
        restore()
    if outcome == "detached":
        from sandbox.cli.render import err

        err(_DETACHED_MESSAGE)
    return outcome, code


def attach(
    container: str = Argument(..., metavar="CONTAINER"),
    detach_keys: str = Option(None, "--detach-keys", help="Override the key sequence for detaching."),
    no_stdin: bool = Option(False, "--no-stdin", help="Do not attach STDIN."),
    sig_proxy: str = Option("true", "--sig-proxy", help="Proxy all received signals to the process."),
) -> None:
    """Attach local standard input, output, and error streams to a running container."""
    from sandbox.config import load_settings
    from sandbox.errors import ContainerNotRunning, InvalidRunOption
    from sandbox.monitor import attach as protocol
    from sandbox.service.lifecycle import Lifecycle

    if sig_proxy.lower() not in ("true", "false", "1", "0"):
        raise InvalidRunOption(f"invalid --sig-proxy value {sig_proxy!r}", hint="use --sig-proxy=true or false")
    settings = load_settings()
    keys = detach_key_bytes(detach_keys, settings)
    lifecycle = Lifecycle(settings)
    record = lifecycle.get(container)
    if record.state.value != "running" or not lifecycle.store.alive(record):
        raise ContainerNotRunning("you cannot attach to a stopped container, start it first")
    tty = bool((record.spec or {}).get("tty"))
    path = protocol.socket_path(settings.runtime_root, record.id)
    try:
        outcome, code = attach_streams(pid=record.pid, tty=tty, stdin=not no_stdin, keys=keys, path=path,
                                       forward_signals=not tty and sig_proxy.lower() in ("true", "1"))
    except protocol.AttachError:
        if lifecycle.get(record.id).state.value == "running":
            raise
        outcome, code = "exited", None  # it exited between the look and the connect
    if outcome == "detached":
        raise SystemExit(0)
    if code is None:
        code = lifecycle.wait(record.id)
    raise SystemExit(code)
