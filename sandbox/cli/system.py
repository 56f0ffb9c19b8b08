"""`sbx system df|prune|check|info` and the top-level `sbx info`."""

from __future__ import annotations

import typer

from sandbox.cli.render import confirm, human_size, out, report_pruned, table


def _service():
    from sandbox.config import load_settings
    from sandbox.service.images import ImageService

    return ImageService(load_settings())


def df() -> None:
    """Show disk usage."""
    usage = _service().disk_usage()
    percent = int(100 * usage.reclaimable_bytes / usage.total_bytes) if usage.total_bytes else 0
    rows = [
        [
            "Images",
            str(usage.images),
            str(usage.active_images),
            human_size(usage.total_bytes),
            f"{human_size(usage.reclaimable_bytes)} ({percent}%)",
        ],
        ["Containers", "0", "0", "0B", "0B"],
    ]
    out(table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], rows))


def prune(
    all_images: bool = typer.Option(False, "--all", "-a", help="Remove all unused images, not just dangling ones."),
    force: bool = typer.Option(False, "--force", "-f", help="Do not prompt for confirmation."),
) -> None:
    """Remove dangling images (all unused ones with -a) and unreferenced blobs."""
    what = "all images without at least one container" if all_images else "all dangling images"
    if not force and not confirm(f"This will remove:\n  - {what}\n  - all blobs no image uses\n"):
        raise typer.Exit(1)
    removed, freed = _service().prune(all_images=all_images)
    report_pruned("Images", (f"deleted: {image_id}" for image_id in removed), freed)


def check() -> None:
    """Verify every blob's digest and every image record; exit 1 when something is damaged."""
    problems = _service().check()
    if not problems:
        out("no problems found")
        return
    for problem in problems:
        out(f"{problem.item}: {problem.message}")
    raise typer.Exit(1)


def info(
    output_format: str = typer.Option(None, "--format", "-f", help="Format the output using a Go template, or json."),
) -> None:
    """Display system-wide information."""
    from sandbox import __version__
    from sandbox.config import load_settings

    settings = load_settings()
    service = _service()
    if output_format:
        from sandbox.cli.formatting import object_template, write_object

        object_template(output_format)  # a bad template is the one error, before anything is read
        write_object(output_format, info_data(settings, service))
        return
    images = len(service.store.images())
    out(f"sbx version: {__version__}")
    out(f"Images: {images}")
    out(f"Storage driver: {service.unpacker().storage_driver(settings.storage_driver)}")
    out(f"Storage root: {settings.data_root}")
    out(f"Runtime root: {settings.runtime_root}")
    out(f"Config file: {settings.config_file or 'none'}")
    mirrors = [f"{host} -> {', '.join(entry.mirrors)}" for host, entry in settings.registries.items() if entry.mirrors]
    out(f"Registry mirrors: {'; '.join(mirrors) or 'none'}")


def info_data(settings, service) -> dict:
    """`sbx info` as data, under the names of Docker's `info --format` fields where they mean the same."""
    import os
    import platform

    from sandbox import __version__
    from sandbox.cli.version import version_data
    from sandbox.service.lifecycle import Lifecycle

    states = [record.state.value for record in Lifecycle(settings).list(all_containers=True)]
    return {
        "Containers": len(states),
        "ContainersRunning": states.count("running"),
        "ContainersPaused": 0,
        "ContainersStopped": len(states) - states.count("running"),
        "Images": len(service.store.images()),
        "Driver": service.unpacker().storage_driver(settings.storage_driver),
        "DockerRootDir": str(settings.data_root),
        "RuntimeRoot": str(settings.runtime_root),
        "ConfigFile": str(settings.config_file or ""),
        "RegistryConfig": {
            "Mirrors": [mirror for entry in settings.registries.values() for mirror in entry.mirrors],
            "IndexConfigs": {host: {"Name": host, "Mirrors": list(entry.mirrors)}
                             for host, entry in settings.registries.items()},
        },
        "KernelVersion": platform.release(),
        "OSType": "linux",
        "Architecture": platform.machine(),
        "NCPU": os.cpu_count() or 1,
        "Name": platform.node(),
        "ServerVersion": __version__,
        "ClientInfo": version_data()["Client"],
    }
