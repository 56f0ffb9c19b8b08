"""`sbx system service [--time SECONDS] [URI]`: serve the Docker Engine API on a unix socket (podman's syntax).

The one command that imports :mod:`sandbox.api`; every other command stays free of it.
"""

from __future__ import annotations

import sys

import typer

# what a monitor, an exec holder and an exec's joiner run in processes forked from the server's threads: imported
# before any thread exists, so no fork can happen while another thread holds one of their import locks
_PRELOAD = (
    "sandbox.monitor.monitor", "sandbox.monitor.exec_holder", "sandbox.monitor.logs", "sandbox.runtime.enter",
    "sandbox.runtime.launcher", "sandbox.runtime.spec", "sandbox.service.containers", "sandbox.service.execution",
    "sandbox.service.images", "sandbox.service.volumes", "sandbox.store.containers", "sandbox.store.locks",
    "sandbox.api.execs", "sandbox.api.progress", "sandbox.api.translate",
)


def service(
    uri: str = typer.Argument(None, metavar="[URI]", help="unix:///path/to/docker.sock (default: in the runtime dir)."),
    seconds: int = typer.Option(5, "--time", "-t", help="Seconds without a connection before it exits (0: never)."),
    log_requests: bool = typer.Option(False, "--log-requests", help="Print each request on stderr."),
) -> None:
    """Serve the Docker Engine API on a unix socket (export DOCKER_HOST=unix://PATH)."""
    import contextlib
    import importlib
    import signal

    from sandbox.api.routes import Api
    from sandbox.api.server import inherited_socket, parse_uri, prepare_socket_dir, serve
    from sandbox.config import load_settings
    from sandbox.errors import InvalidRunOption

    if seconds < 0:
        raise InvalidRunOption(f"invalid --time {seconds}", hint="give seconds, or 0 to serve until stopped")
    settings = load_settings()
    inherited = inherited_socket()  # systemd's socket activation; else our own socket at URI
    path = None
    if inherited is None:
        path = parse_uri(uri, settings.runtime_root)
        prepare_socket_dir(path, settings.runtime_root)
    for name in _PRELOAD:
        importlib.import_module(name)
    log = (lambda line: sys.stderr.write(line.rstrip("\n") + "\n")) if log_requests else None

    def leave(_signum, _frame) -> None:
        raise SystemExit(0)  # out of serve_forever, through the finally that removes the socket

    signal.signal(signal.SIGTERM, leave)
    with contextlib.suppress(KeyboardInterrupt):
        serve(path, Api(settings).routes(), idle=float(seconds), log=log, inherited=inherited)
