"""`sbx version`: Docker's Client section (sbx has no server: it is daemonless), and its --format."""

from __future__ import annotations

import platform
import sys

from sandbox.cli.params import Option

_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
                  "s390x": "s390x", "riscv64": "riscv64"}


def version_data() -> dict:
    """What `docker version --format '{{json .}}'` shows of its client, with sbx's values."""
    from sandbox import __version__

    machine = platform.machine()
    return {
        "Client": {
            "Platform": {"Name": "sbx"},
            "Version": __version__,
            "PythonVersion": platform.python_version(),
            "Os": sys.platform if sys.platform != "linux" else "linux",
            "Arch": _ARCHITECTURES.get(machine, machine),
            "Context": "default",
        }
    }


def version(
    output_format: str = Option(None, "--format", "-f", help="Format the output using a Go template, or json."),
) -> None:
    """Show the sbx version information."""
    data = version_data()
    if output_format:
        from sandbox.cli.formatting import write_object

        write_object(output_format, data)
        return
    client = data["Client"]
    sys.stdout.write(
        "Client:\n"
        f" Version:           {client['Version']}\n"
        f" Python version:    {client['PythonVersion']}\n"
        f" OS/Arch:           {client['Os']}/{client['Arch']}\n"
        f" Context:           {client['Context']}\n"
    )
