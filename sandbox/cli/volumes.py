"""`sbx volume create|ls|inspect|rm|prune`: named volumes (the work is :mod:`sandbox.service.volumes`)."""

from __future__ import annotations

import json

import typer

from sandbox.cli.render import json_line, out, table


def _volumes():
    from sandbox.config import load_settings
    from sandbox.service.volumes import Volumes

    return Volumes(load_settings())


def _describe(volume) -> dict:
    return {
        "CreatedAt": volume.created_text, "Driver": "local", "Labels": volume.labels,
        "Mountpoint": str(volume.path), "Name": volume.name, "Options": {}, "Scope": "local",
    }


def create(
    name: str = typer.Argument(None, metavar="[VOLUME]"),
    label: list[str] = typer.Option([], "--label", "-l", help="Set metadata for a volume."),
    driver: str = typer.Option("local", "--driver", "-d", help="Volume driver name (local only)."),
) -> None:
    """Create a volume."""
    from sandbox.errors import InvalidVolumeName

    if driver != "local":
        raise InvalidVolumeName(f"unsupported volume driver {driver!r}", hint="sbx has the local driver only")
    labels = dict(item.partition("=")[::2] for item in label)
    out(_volumes().create(name or None, labels=labels).name)


def ls(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only display volume names."),
    output_format: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """List volumes."""
    volumes = _volumes().list()
    if quiet:
        for volume in volumes:
            out(volume.name)
    elif output_format == "json":
        for volume in volumes:
            out(json_line(_describe(volume)))
    else:
        out(table(["DRIVER", "VOLUME NAME"], [["local", volume.name] for volume in volumes]))


def inspect(names: list[str] = typer.Argument(..., metavar="VOLUME...")) -> None:
    """Display detailed information on one or more volumes."""
    service = _volumes()
    out(json.dumps([_describe(service.get(name)) for name in names], indent=4))


def rm(
    names: list[str] = typer.Argument(..., metavar="VOLUME..."),
    force: bool = typer.Option(False, "--force", "-f", help="Force the removal of one or more volumes."),
) -> None:
    """Remove one or more volumes."""
    service = _volumes()
    for name in names:
        service.remove(name, force=force)
        out(name)


def prune(force: bool = typer.Option(False, "--force", "-f", help="Do not prompt for confirmation.")) -> None:
    """Remove all volumes no container uses."""
    from sandbox.cli.render import confirm, report_pruned

    if not force and not confirm("This will remove all volumes not used by at least one container."):
        raise typer.Exit(1)
    removed, reclaimed = _volumes().prune()
    report_pruned("Volumes", removed, reclaimed)
