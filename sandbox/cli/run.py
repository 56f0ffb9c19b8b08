"""`sbx run`: Docker's flags, pull when missing, the terminal or the signals, and Docker's exit codes."""

from __future__ import annotations

import sys

from sandbox.cli.params import Argument, Option, to_typer
from sandbox.cli.render import err

EXIT_SBX = 125


def run(
    image: str = Argument(..., metavar="IMAGE"),
    args: list[str] = Argument(None, metavar="[COMMAND] [ARG...]"),
    env: list[str] = Option([], "--env", "-e", help="Set environment variables."),
    env_file: list[str] = Option([], "--env-file", help="Read in a file of environment variables."),
    workdir: str = Option(None, "--workdir", "-w", help="Working directory inside the container."),
    user: str = Option(None, "--user", "-u", help="Username or UID (format: <name|uid>[:<group|gid>])."),
    entrypoint: str = Option(None, "--entrypoint", help="Overwrite the default ENTRYPOINT of the image."),
    volume: list[str] = Option([], "--volume", "-v", help="Bind mount a volume: /host:/container[:ro]."),
    mount: list[str] = Option([], "--mount", help="Attach a mount: type=bind|tmpfs,..."),
    tmpfs: list[str] = Option([], "--tmpfs", help="Mount a tmpfs directory."),
    read_only: bool = Option(False, "--read-only", help="Mount the container's root filesystem read only."),
    hostname: str = Option(None, "--hostname", "-h", help="Container host name."),
    name: str = Option(None, "--name", help="Assign a name to the container."),
    remove: bool = Option(
        False, "--rm", help="Remove the container when it exits (a foreground run always does, for now)."
    ),
    init: bool = Option(False, "--init", help="Run an init inside the container that reaps processes."),
    interactive: bool = Option(False, "--interactive", "-i", help="Keep STDIN open."),
    tty: bool = Option(False, "--tty", "-t", help="Allocate a pseudo-TTY."),
    pull: str = Option("missing", "--pull", help="Pull image before running: always, missing, never."),
    platform: str = Option(None, "--platform", help="Set platform if server is multi-platform capable."),
    network: str = Option("none", "--network", "--net", help="none or host."),
    detach: bool = Option(False, "--detach", "-d", help="Run in the background and print the container ID."),
    detach_keys: str = Option(None, "--detach-keys", help="Override the key sequence for detaching."),
) -> None:
    """Create and run a new container from an image."""
    from sandbox.errors import SbxError
    from sandbox.service.containers import RunOptions

    options = RunOptions(
        env=list(env), env_files=list(env_file), workdir=workdir, user=user, entrypoint=entrypoint,
        volumes=list(volume), mounts=list(mount), tmpfs=list(tmpfs), read_only=read_only, hostname=hostname,
        name=name, init=init, interactive=interactive, tty=tty, network=network,
    )
    if tty and not detach:
        from sandbox.cli.attach import terminal_size

        options.console_size = terminal_size()
    try:
        from sandbox.config import load_settings
        from sandbox.service.lifecycle import Lifecycle

        lifecycle = Lifecycle(load_settings())
        _ensure_image(lifecycle.containers.images, image, pull, platform)
        if detach:
            container_id = lifecycle.run_detached(image, list(args or []), options, auto_remove=remove)
            print_warnings(lifecycle)
            sys.stdout.write(container_id + "\n")
            return
        code = _run_attached(lifecycle, image, list(args or []), options, auto_remove=remove, detach_keys=detach_keys)
    except SbxError as error:
        if getattr(error, "exit_code", None) is None:
            error.exit_code = EXIT_SBX
        raise
    raise SystemExit(code)


def _run_attached(lifecycle, image: str, args: list[str], options, *, auto_remove: bool,
                  detach_keys: str | None) -> int:
    """Docker's foreground run: create + start + attach through the container's monitor, connected before the
    container starts so no output is lost; Ctrl-p Ctrl-q (or --detach-keys) leaves it running."""
    from sandbox.cli.attach import attach_streams, detach_key_bytes
    from sandbox.monitor import attach as protocol

    keys = detach_key_bytes(detach_keys, lifecycle.settings)
    connection = {}

    def connect_early(path) -> None:
        connection["sock"] = protocol.connect(path)

    try:
        container_id = lifecycle.run_detached(image, args, options, auto_remove=auto_remove,
                                              on_listening=connect_early)
    except BaseException:
        if "sock" in connection:
            connection["sock"].close()
        raise
    print_warnings(lifecycle)
    record = lifecycle.get(container_id)
    outcome, code = attach_streams(pid=record.pid, tty=options.tty, stdin=options.interactive, keys=keys,
                                   sock=connection["sock"], forward_signals=not options.tty)
    if outcome == "detached":
        return 0
    return code if code is not None else lifecycle.wait(container_id)


def print_warnings(lifecycle) -> None:
    """What creating the container worked around (an image StopSignal that names no signal), as Docker prints it."""
    for text in lifecycle.containers.warnings:
        err(f"WARNING: {text}")


def _ensure_image(images, image: str, pull: str, platform: str | None) -> None:
    """Docker's --pull: `missing` pulls with "Unable to find image" when absent; pull output goes to stderr.
    ``images`` is the image service the container will be made with (one store opened per command)."""
    from sandbox.errors import ImageNotFound, InvalidRunOption

    if pull not in ("always", "missing", "never"):
        raise InvalidRunOption(f"invalid pull option {pull!r}", hint="use always, missing or never")
    if pull == "always":
        from sandbox.cli.images import pull_image  # here: it brings typer and rich, a present image needs neither

        pull_image(image, platform=platform, to_stderr=True)
        return
    try:
        images.resolve(image)
    except ImageNotFound:
        if pull == "never":
            raise
        from sandbox.cli.images import pull_image
        from sandbox.oci.reference import Reference

        ref = Reference.parse(image)
        err(f"Unable to find image '{ref.familiar}' locally")
        pull_image(image, platform=platform, to_stderr=True)


def register(app) -> None:
    import typer

    from sandbox.cli import attach, containers
    from sandbox.cli import exec as exec_

    settings = {"allow_interspersed_args": False}
    app.command("run", context_settings=settings)(to_typer(run))
    group = typer.Typer(help="Manage containers.", no_args_is_help=True)
    group.command("run", context_settings=settings)(to_typer(run))
    containers.register(app, group)
    exec_.register(app, group)
    attach.register(app, group)
    app.add_typer(group, name="container")
