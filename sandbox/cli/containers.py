"""Container commands: create, start, restart, rename, ps, logs, stop, kill, rm, wait, top, `container prune` and
`container inspect` (Docker's output)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from sandbox.cli.params import Argument, Option
from sandbox.cli.render import escape, human_duration, json_line, listing_template_given, out, since, table
from sandbox.exitcodes import UNKNOWN


def _lifecycle():
    from sandbox.config import load_settings
    from sandbox.service.lifecycle import Lifecycle

    return Lifecycle(load_settings())


def status_text(record, now: float | None = None) -> str:
    """Docker's STATUS column: `Up 3 minutes`, `Exited (0) 5 seconds ago`, `Created`."""
    now = now or time.time()
    if record.state.value == "running":
        return f"Up {human_duration(now - (record.started_at or now))}"
    if record.state.value == "exited":
        code = record.exit_code if record.exit_code is not None else UNKNOWN
        return f"Exited ({code}) {since(record.finished_at, now)}" if record.finished_at else f"Exited ({code})"
    return "Created"


def command_text(command: tuple[str, ...], truncate: bool) -> str:
    """Docker's COMMAND column: the command cut to 20 columns with `…`, then double-quoted."""
    text = " ".join(command)
    if truncate and len(text) > 20:
        text = text[:19] + "…"
    return json.dumps(text, ensure_ascii=False)


def ps(
    all_containers: bool = Option(False, "--all", "-a", help="Show all containers (default shows just running)."),
    quiet: bool = Option(False, "--quiet", "-q", help="Only display container IDs."),
    last: int = Option(-1, "--last", "-n", help="Show n last created containers (includes all states)."),
    latest: bool = Option(False, "--latest", "-l", help="Show the latest created container."),
    no_trunc: bool = Option(False, "--no-trunc", help="Don't truncate output."),
    filters: list[str] = Option([], "--filter", "-f", help="Filter output: name=, status=, ancestor=."),
    output_format: str = Option(
        "table", "--format", help="table, json, or a Go template (e.g. 'table {{.ID}}\\t{{.Names}}')."
    ),
) -> None:
    """List containers."""
    template = listing_template_given(output_format)
    lifecycle = _lifecycle()
    records = lifecycle.list(all_containers=all_containers or last > 0 or latest)
    records = [record for record in records if _matches(record, filters)]
    if latest:
        last = 1
    if last > 0:
        records = records[:last]
    now = time.time()
    if quiet:
        for record in records:
            out(record.id if no_trunc else record.id[:12])
        return
    if template:
        from sandbox.cli.formatting import write_listing

        write_listing(output_format, [ps_fields(record, now, no_trunc) for record in records], PS_HEADERS)
        return
    if output_format == "json":
        for record in records:
            out(json_line({
                "Command": command_text(record.command, not no_trunc), "CreatedAt": _created(record),
                "ID": record.id if no_trunc else record.id[:12], "Image": record.image, "Names": record.name,
                "Ports": _ports(record), "RunningFor": since(record.created, now).removesuffix(" ago"),
                "State": record.state.value, "Status": status_text(record, now),
            }))
        return
    rows = [
        [record.id if no_trunc else record.id[:12], record.image, command_text(record.command, not no_trunc),
         since(record.created, now), status_text(record, now), _ports(record), record.name]
        for record in records
    ]
    out(table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], rows))


# Docker's ps columns: the fields a --format template reaches and their table headers
PS_HEADERS = {
    "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT", "RunningFor": "CREATED",
    "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES", "Labels": "LABELS",
    "Mounts": "MOUNTS", "LocalVolumes": "LOCAL VOLUMES", "Networks": "NETWORKS",
}


def ps_fields(record, now: float, no_trunc: bool) -> dict:
    """One container as Docker's ps template sees it (sbx keeps no labels or volumes; sizes are not measured)."""
    spec = record.spec or {}
    mounts = [mount.get("source") or mount.get("target", "") for mount in (spec.get("spec") or {}).get("mounts", [])
              if mount.get("kind") == "bind"]
    return {
        "ID": record.id if no_trunc else record.id[:12], "Image": record.image,
        "Command": command_text(record.command, not no_trunc), "CreatedAt": _created(record),
        "RunningFor": since(record.created, now), "Ports": _ports(record), "State": record.state.value,
        "Status": status_text(record, now), "Size": "0B", "Names": record.name, "Labels": "",
        "Mounts": ",".join(mount if no_trunc or len(mount) <= 15 else mount[:14] + "…" for mount in mounts),
        "LocalVolumes": "0", "Networks": spec.get("network", ""), "Label": lambda _name: "",
    }


def _ports(record) -> str:
    """Docker's PORTS column (``0.0.0.0:8080->80/tcp``); nothing is imported for a record that publishes none."""
    if record.state.value != "running" or not ((record.spec or {}).get("network_settings") or {}).get("ports"):
        return ""
    from sandbox.network.ports import ps_text
    from sandbox.service.lifecycle import published_ports

    return ps_text(published_ports(record))


def _created(record) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(record.created))


def _matches(record, filters: list[str]) -> bool:
    import fnmatch

    from sandbox.errors import SbxError

    for item in filters:
        key, sep, value = item.partition("=")
        if not sep:
            raise SbxError(f"invalid filter {item!r}", hint="use name=, status= or ancestor=")
        if key == "name" and value not in record.name:
            return False
        if key == "status" and record.state.value != value:
            return False
        if key == "ancestor" and not (fnmatch.fnmatchcase(record.image, value) or record.image_id.startswith(value)):
            return False
        if key not in ("name", "status", "ancestor"):
            raise SbxError(f"invalid filter {key!r}", hint="use name=, status= or ancestor=")
    return True


def logs(
    container: str = Argument(..., metavar="CONTAINER"),
    follow: bool = Option(False, "--follow", "-f", help="Follow log output."),
    timestamps: bool = Option(False, "--timestamps", "-t", help="Show timestamps."),
    tail: str = Option("all", "--tail", "-n", help="Number of lines to show from the end of the logs."),
    since_text: str = Option(None, "--since", help="Show logs since a timestamp or relative (e.g. 42m)."),
) -> None:
    """Fetch the logs of a container."""
    from sandbox.errors import SbxError
    from sandbox.service.lifecycle import since_timestamp

    if tail != "all" and not tail.isdigit():
        raise SbxError(f"invalid --tail value {tail!r}", hint="use a number or all")
    count = None if tail == "all" else int(tail)
    start = since_timestamp(since_text) if since_text else None
    for entry in _lifecycle().logs(container, tail=count, since=start, follow=follow):
        stream = sys.stderr if entry.stream == "stderr" else sys.stdout
        prefix = ""
        if timestamps:
            whole = int(entry.time)
            fraction = int((entry.time - whole) * 1e9)
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{fraction:09d}Z "
        stream.write(prefix + entry.text)
        stream.flush()


def _each(names: list[str], action) -> None:
    """Docker's multi-container commands: go on after a failure, print each name done, exit 1 if any failed."""
    from sandbox.cli.main import report
    from sandbox.errors import SbxError

    failed = 0
    for name in names:
        try:
            action(name)
        except SbxError as error:
            failed = report(error)
            continue
        out(escape(name))
    if failed:
        raise SystemExit(failed)


def stop(
    names: list[str] = Argument(..., metavar="CONTAINER [CONTAINER...]"),
    timeout: int = Option(10, "--time", "-t", help="Seconds to wait before killing the container."),
    signal_name: str = Option(None, "--signal", "-s", help="Signal to send to the container."),
) -> None:
    """Stop one or more running containers."""
    lifecycle = _lifecycle()
    _each(names, lambda name: lifecycle.stop(name, timeout=timeout, signal_name=signal_name))


def kill(
    names: list[str] = Argument(..., metavar="CONTAINER [CONTAINER...]"),
    signal_name: str = Option("KILL", "--signal", "-s", help="Signal to send to the container."),
) -> None:
    """Kill one or more running containers."""
    lifecycle = _lifecycle()
    _each(names, lambda name: lifecycle.kill(name, signal_name))


def rm(
    names: list[str] = Argument(..., metavar="CONTAINER [CONTAINER...]"),
    force: bool = Option(False, "--force", "-f", help="Force the removal of a running container."),
    volumes: bool = Option(False, "--volumes", "-v", help="Remove anonymous volumes (sbx makes none)."),
) -> None:
    """Remove one or more containers."""
    lifecycle = _lifecycle()
    _each(names, lambda name: lifecycle.remove(name, force=force))


def wait(names: list[str] = Argument(..., metavar="CONTAINER [CONTAINER...]")) -> None:
    """Block until one or more containers stop, then print their exit codes."""
    from sandbox.cli.main import report
    from sandbox.errors import SbxError

    lifecycle = _lifecycle()
    failed = 0
    for name in names:
        try:
            out(str(lifecycle.wait(name)))
        except SbxError as error:
            failed = report(error)
    if failed:
        raise SystemExit(failed)


def port(
    container: str = Argument(..., metavar="CONTAINER"),
    private_port: str = Argument(None, metavar="[PRIVATE_PORT[/PROTO]]"),
) -> None:
    """List port mappings or a specific mapping for the container."""
    from sandbox.errors import SbxError
    from sandbox.network.ports import port_lines
    from sandbox.service.lifecycle import published_ports

    record = _lifecycle().get(container)  # an unknown container is an error, as with Docker
    shown = None
    if private_port:
        shown = private_port if "/" in private_port else f"{private_port}/tcp"
    lines = port_lines(published_ports(record), shown)
    if shown and not lines:
        raise SbxError(f"no public port '{shown}' published for {container}")
    for line in lines:
        out(line)


def container_inspect(
    names: list[str] = Argument(..., metavar="CONTAINER [CONTAINER...]"),
    output_format: str = Option(None, "--format", "-f", help="Format the output using a Go template, or json."),
) -> None:
    """Display detailed information on one or more containers."""
    inspect_each(names, _lifecycle().inspect, output_format)


def inspect_any(
    names: list[str] = Argument(..., metavar="NAME|ID [NAME|ID...]"),
    output_format: str = Option(None, "--format", "-f", help="Format the output using a Go template, or json."),
) -> None:
    """Display detailed information on containers or images (a container is looked up first, as Docker does)."""
    from sandbox.cli.main import report
    from sandbox.config import load_settings
    from sandbox.errors import ContainerNotFound, ImageNotFound, SbxError
    from sandbox.service.images import ImageService

    template = object_template(output_format)
    lifecycle = _lifecycle()
    images = ImageService(load_settings())
    found, failed = [], 0
    for name in names:
        try:
            try:
                found.append(lifecycle.inspect(name))
            except ContainerNotFound:
                found.append(images.inspect(name))
        except ImageNotFound:
            failed = report(SbxError(f"no such object: {name}"))
        except SbxError as error:
            failed = report(error)
    show_inspected(found, template)
    if failed:
        raise SystemExit(failed)


def object_template(output_format: str | None):
    """An inspect's Go template, parsed before any lookup; None for Docker's default JSON array."""
    if output_format in (None, "", "json"):
        return None
    from sandbox.cli.formatting import object_template as parse

    return parse(output_format)


def inspect_each(names: list[str], inspect: Callable[[str], dict], output_format: str | None) -> None:
    """`inspect` for containers and images: every name that is found is shown (as JSON or by the template), every
    one that is not is reported on its own line, and the exit code is 1 if any was not found, as Docker's."""
    from sandbox.cli.main import report
    from sandbox.errors import SbxError

    template = object_template(output_format)
    found, failed = [], 0
    for name in names:
        try:
            found.append(inspect(name))
        except SbxError as error:
            failed = report(error)
    show_inspected(found, template)
    if failed:
        raise SystemExit(failed)


def show_inspected(found: list[dict], template) -> None:
    if template is None:
        out(json.dumps(found, indent=4))
        return
    from sandbox.cli.formatting import write_objects

    write_objects(template, found)


def create_command():
    """`sbx create`: run's flags but -d (the signature is run's, so the two never drift apart)."""
    import inspect
    import typing

    from sandbox.cli import run as run_module

    def create(**flags) -> None:
        """Create a new container (it is started with sbx start)."""
        from sandbox.service.containers import RunOptions

        options = RunOptions(
            env=list(flags["env"]), env_files=list(flags["env_file"]), workdir=flags["workdir"], user=flags["user"],
            entrypoint=flags["entrypoint"], volumes=list(flags["volume"]), mounts=list(flags["mount"]),
            tmpfs=list(flags["tmpfs"]), read_only=flags["read_only"], hostname=flags["hostname"], name=flags["name"],
            init=flags["init"], interactive=flags["interactive"], tty=flags["tty"], network=flags["network"],
            security_opts=list(flags["security_opt"]), cap_add=list(flags["cap_add"]),
            cap_drop=list(flags["cap_drop"]), privileged=flags["privileged"],
            publish=list(flags["publish"]), publish_all=flags["publish_all"], dns=list(flags["dns"]),
            dns_search=list(flags["dns_search"]), add_hosts=list(flags["add_host"]),
        )
        run_module.limit_options(options, flags)
        image, args = flags["image"], list(flags["args"] or [])
        lifecycle = _lifecycle()
        run_module._ensure_image(lifecycle.containers.images, image, flags["pull"], flags["platform"])
        container_id = lifecycle.create(image, args, options, auto_remove=flags["remove"])
        run_module.print_warnings(lifecycle)
        out(container_id)

    signature = inspect.signature(run_module.run)
    hints = typing.get_type_hints(run_module.run)
    parameters = [parameter.replace(annotation=hints[name]) for name, parameter in signature.parameters.items()
                  if name != "detach"]
    create.__signature__ = signature.replace(parameters=parameters, return_annotation=None)
    create.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return create


def start(
    names: list[str] = Argument(..., metavar="CONTAINER [CONTAINER...]"),
    attach: bool = Option(False, "--attach", "-a", help="Attach STDOUT/STDERR and forward signals."),
    interactive: bool = Option(False, "--interactive", "-i", help="Attach the container's STDIN."),
    detach_keys: str = Option(None, "--detach-keys", help="Override the key sequence for detaching."),
) -> None:
    """Start one or more created or stopped containers."""
    from sandbox.errors import SbxError

    lifecycle = _lifecycle()
    if not (attach or interactive):
        _each(names, lifecycle.start)
        return
    if len(names) != 1:
        raise SbxError("you cannot start and attach multiple containers at once")
    from sandbox.cli.attach import attach as attach_command

    lifecycle.start(names[0])
    attach_command(names[0], detach_keys=detach_keys, no_stdin=not interactive, sig_proxy="true")


def restart(
    names: list[str] = Argument(..., metavar="CONTAINER [CONTAINER...]"),
    timeout: int = Option(10, "--time", "-t", help="Seconds to wait before killing the container."),
    signal_name: str = Option(None, "--signal", "-s", help="Signal to send to the container."),
) -> None:
    """Restart one or more containers."""
    lifecycle = _lifecycle()
    _each(names, lambda name: lifecycle.restart(name, timeout=timeout, signal_name=signal_name))


def rename(
    container: str = Argument(..., metavar="CONTAINER"),
    new_name: str = Argument(..., metavar="NEW_NAME"),
) -> None:
    """Rename a container."""
    _lifecycle().rename(container, new_name)


def prune(force: bool = Option(False, "--force", "-f", help="Do not prompt for confirmation.")) -> None:
    """Remove all stopped containers."""
    from sandbox.cli.render import confirm, report_pruned

    if not force and not confirm("This will remove all stopped containers."):
        return
    removed, reclaimed = _lifecycle().prune()
    report_pruned("Containers", removed, reclaimed)


def top(container: str = Argument(..., metavar="CONTAINER")) -> None:
    """Display the running processes of a container."""
    titles, rows = _lifecycle().top(container)
    out(_top_table(titles, rows))


def _top_table(titles: list[str], rows: list[list[str]]) -> str:
    """Docker's top table: tabwriter with minwidth 20 (not 10 as in the listings), padding 3; the last cell bare."""
    lines = [titles, *([escape(cell) for cell in row] for row in rows)]
    widths = [max([20] + [len(line[index]) + 3 for line in lines]) for index in range(len(titles) - 1)]
    return "\n".join("".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])) + line[-1] for line in lines)
