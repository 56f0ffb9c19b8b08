"""Archive commands: save, load, import (top level and under `sbx image`)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from sandbox.cli.render import out


def _service():
    from sandbox.config import load_settings
    from sandbox.service.archive import ArchiveService
    from sandbox.service.images import ImageService

    return ArchiveService(ImageService(load_settings()))


def save(
    names: list[str] = typer.Argument(..., metavar="IMAGE [IMAGE...]"),
    output: str = typer.Option(None, "--output", "-o", help="Write to a file, instead of STDOUT."),
    archive_format: str = typer.Option(
        "docker-archive", "--format", help="docker-archive (the default) or oci-archive."
    ),
) -> None:
    """Save one or more images to a tar archive (streamed to STDOUT by default)."""
    from sandbox.errors import SbxError

    service = _service()
    if output and output != "-":
        service.save(names, Path(output), fmt=archive_format)
        return
    if sys.stdout.isatty():
        raise SbxError("cowardly refusing to save to a terminal", hint="use the -o flag or redirect")
    sys.stdout.flush()
    service.save(names, sys.stdout.buffer, fmt=archive_format)
    sys.stdout.buffer.flush()


def load(
    source: str = typer.Option(None, "--input", "-i", help="Read from tar archive file, instead of STDIN."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Suppress the load output."),
) -> None:
    """Load images from a tar archive (docker-archive or oci-archive) or STDIN."""
    from sandbox.errors import SbxError

    service = _service()
    if source and source != "-":
        results = service.load(Path(source), label=source)
    else:
        if sys.stdin.isatty():
            raise SbxError("requested load from stdin, but stdin is empty", hint="use -i FILE or redirect")
        results = service.load(sys.stdin.buffer, label="stdin")
    del quiet  # Docker's -q only hides progress, which sbx does not draw
    for result in results:
        if result.tags:
            for tag in result.familiar_tags:
                out(f"Loaded image: {tag}")
        else:
            out(f"Loaded image ID: {result.record.id}")


def import_image(
    source: str = typer.Argument(..., metavar="FILE|-"),
    reference: str = typer.Argument(None, metavar="[REPOSITORY[:TAG]]"),
    changes: list[str] = typer.Option([], "--change", "-c", help="Apply Dockerfile instruction to the image."),
    message: str = typer.Option(None, "--message", "-m", help="Set commit message for imported image."),
    platform: str = typer.Option(None, "--platform", help="Set platform (os/arch[/variant])."),
) -> None:
    """Import the contents from a tarball to create a filesystem image."""
    service = _service()
    if source == "-":
        record = service.import_rootfs(
            sys.stdin.buffer, reference, changes=changes, message=message, platform=platform, label="-"
        )
    else:
        record = service.import_rootfs(
            Path(source), reference, changes=changes, message=message, platform=platform, label=source
        )
    out(str(record.id))
