"""`sbx run`: Docker's flags, pull when missing, the terminal or the signals, and Docker's exit codes."""

from __future__ import annotations

import sys

from sandbox.cli.params import Argument, Option


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
    network: str = Option(
        None, "--network", "--net", help="slirp4netns (default), pasta, none, host or container:NAME."
    ),
    detach: bool = Option(False, "--detach", "-d", help="Run in the background and print the container ID."),
    detach_keys: str = Option(None, "--detach-keys", help="Override the key sequence for detaching."),
    memory: str = Option(None, "--memory", "-m", help="Memory limit (e.g. 512m)."),
    memory_swap: str = Option(None, "--memory-swap", help="Memory plus swap limit; -1 for unlimited swap."),
    memory_reservation: str = Option(None, "--memory-reservation", help="Memory soft limit."),
    cpus: str = Option(None, "--cpus", help="Number of CPUs (e.g. 1.5)."),
    cpu_shares: int = Option(0, "--cpu-shares", "-c", help="CPU shares (relative weight, 2-262144)."),
    cpu_weight: int = Option(0, "--cpu-weight", help="CPU weight (cgroup v2, 1-10000)."),
    cpuset_cpus: str = Option(None, "--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)."),
    pids_limit: int = Option(0, "--pids-limit", help="Tune container pids limit (-1 for unlimited)."),
    blkio_weight: int = Option(0, "--blkio-weight", help="Block IO weight (relative weight), 10 to 1000."),
    ulimit: list[str] = Option([], "--ulimit", help="Ulimit options (name=soft[:hard])."),
    limits: str = Option(None, "--limits", help="strict (refuse a limit nothing can enforce) or best-effort."),
    security_opt: list[str] = Option(
        [], "--security-opt", help="seccomp=NAME|PATH|unconfined, no-new-privileges, unmask=PATH|ALL."
    ),
    cap_add: list[str] = Option([], "--cap-add", help="Add Linux capabilities."),
    cap_drop: list[str] = Option([], "--cap-drop", help="Drop Linux capabilities (ALL for every one)."),
    privileged: bool = Option(
        False, "--privileged", help="Every capability of the user namespace, no seccomp, nothing masked."
    ),
    publish: list[str] = Option([], "--publish", "-p", help="Publish a container's port(s) to the host."),
    publish_all: bool = Option(False, "--publish-all", "-P", help="Publish all exposed ports to random ports."),
    dns: list[str] = Option([], "--dns", help="Set custom DNS servers."),
    dns_search: list[str] = Option([], "--dns-search", help="Set custom DNS search domains."),
    add_host: list[str] = Option([], "--add-host", help="Add a custom host-to-IP mapping (host:ip)."),
) -> None:
    """Create and run a new container from an image."""
    prepared = _prepare_monitor(network)
    try:
        from sandbox.service.containers import RunOptions

        options = RunOptions(
            env=list(env), env_files=list(env_file), workdir=workdir, user=user, entrypoint=entrypoint,
            volumes=list(volume), mounts=list(mount), tmpfs=list(tmpfs), read_only=read_only, hostname=hostname,
            name=name, init=init, interactive=interactive, tty=tty, network=network,
            security_opts=list(security_opt), cap_add=list(cap_add), cap_drop=list(cap_drop), privileged=privileged,
            publish=list(publish), publish_all=publish_all, dns=list(dns), dns_search=list(dns_search),
            add_hosts=list(add_host),
        )
        limit_options(options, locals())
        if tty and not detach:
            from sandbox.cli.attach import terminal_size

            options.console_size = terminal_size()
        from sandbox.config import load_settings
        from sandbox.service.lifecycle import Lifecycle

        lifecycle = Lifecycle(load_settings())
        _ensure_image(lifecycle.containers.images, image, pull, platform)
        if detach:
            container_id = lifecycle.run_detached(image, list(args or []), options, auto_remove=remove,
                                                  prepared=prepared)
            print_warnings(lifecycle)
            sys.stdout.write(container_id + "\n")
            return
        code = _run_attached(lifecycle, image, list(args or []), options, auto_remove=remove,
                             detach_keys=detach_keys, prepared=prepared)
        raise SystemExit(code)
    except BaseException:
        if prepared is not None:
            prepared.close()  # the monitor exits without a word (run_detached has started or closed it otherwise)
        raise


def _prepare_monitor(network: str | None):
    """The container's monitor, forked first: its imports run on another CPU while this process resolves the
    image and records and builds the container (BENCHMARKS B1). Not for ``--network container:``, whose monitor is
    a fresh interpreter (:mod:`sandbox.service.monitoring`)."""
    if network and network.startswith("container:"):
        return None
    from sandbox.service.monitoring import prepare

    return prepare()


LIMIT_FLAGS = ("memory", "memory_swap", "memory_reservation", "cpus", "cpu_shares", "cpu_weight", "cpuset_cpus",
               "pids_limit", "blkio_weight", "ulimit")


def limit_options(options, flags: dict) -> None:
    """The resource-limit flags of run (or create) into ``options``; the warning about unenforced ones to stderr."""
    from sandbox.cli.render import err

    options.limit_flags = {name: flags[name] for name in LIMIT_FLAGS}
    options.limits_mode = flags["limits"]
    options.notice = err


def _run_attached(lifecycle, image: str, args: list[str], options, *, auto_remove: bool,
                  detach_keys: str | None, prepared=None) -> int:
    """Docker's foreground run: create + start + attach through the container's monitor, connected before the
    container starts so no output is lost; Ctrl-p Ctrl-q (or --detach-keys) leaves it running."""
    from sandbox.cli.attach import attach_streams, detach_key_bytes
    from sandbox.errors import ContainerNotFound

    keys = detach_key_bytes(detach_keys, lifecycle.settings)
    connection = {}

    def connect_early(path) -> None:
        from sandbox.monitor import attach as protocol

        connection["sock"] = protocol.connect(path)

    try:
        container_id = lifecycle.run_detached(image, args, options, auto_remove=auto_remove,
                                              on_listening=connect_early, prepared=prepared,
                                              meanwhile=_import_attach)
    except BaseException:
        if "sock" in connection:
            connection["sock"].close()
        raise
    print_warnings(lifecycle)
    try:
        pid = lifecycle.get(container_id).pid
    except ContainerNotFound:  # --rm: it ended and was removed already; its code still comes over the socket
        pid = None
    outcome, code = attach_streams(pid=pid, tty=options.tty, stdin=options.interactive, keys=keys,
                                   sock=connection["sock"], forward_signals=not options.tty,
                                   end_input=not options.tty)  # Docker's run -i: the end of stdin ends the input
    if outcome == "detached":
        return 0
    return code if code is not None else lifecycle.wait(container_id)


def _import_attach() -> None:
    """The attach protocol (socket, selectors, signal), imported while the monitor reads the container's record and
    opens its socket, not before the container is made (BENCHMARKS B1)."""
    from sandbox.monitor import attach  # noqa: F401


def print_warnings(lifecycle) -> None:
    """What creating the container worked around (an image StopSignal that names no signal), as Docker prints it."""
    from sandbox.cli.render import err

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
        from sandbox.cli.render import err
        from sandbox.oci.reference import Reference

        ref = Reference.parse(image)
        err(f"Unable to find image '{ref.familiar}' locally")
        pull_image(image, platform=platform, to_stderr=True)
