"""The typer application: global options and the command groups, registered from their modules."""

from __future__ import annotations

import os
import sys

import typer

from sandbox import __version__
from sandbox.cli import archive, doctor, images, policy, run, system, version, volumes
from sandbox.cli.params import to_typer

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
    storage_driver: str = typer.Option(
        None, "--storage-driver", help="Root filesystem driver: overlay, fuse-overlayfs or copy (default: probed)."
    ),
    version: bool = typer.Option(
        False, "--version", "-v", callback=_version, is_eager=True, help="Print version information and quit."
    ),
) -> None:
    if debug:
        os.environ["SBX_DEBUG"] = "1"
    if storage_driver:
        os.environ["SBX_STORAGE_DRIVER"] = storage_driver


app.command("version")(to_typer(version.version))
images.register(app)
system.register(app)
archive.register(app)
run.register(app)
policy.register(app)
doctor.register(app)
volumes.register(app)
