"""`--change` instructions (as `docker import --change`): Dockerfile-style lines applied to a container config.

Pure parsing: ``CMD``/``ENTRYPOINT`` (JSON array or shell form), ``ENV``/``LABEL`` (``k=v`` pairs, ENV also the
legacy ``k v``), ``EXPOSE`` (PORT[/proto]), ``USER``, ``WORKDIR`` (relative to the previous one), ``STOPSIGNAL``
(checked when a container is created from the image, as Docker's is).
"""

from __future__ import annotations

import json
import posixpath
import shlex
from collections.abc import Iterable

from sandbox.errors import InvalidArchive

CHANGE_INSTRUCTIONS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "USER", "WORKDIR", "STOPSIGNAL")


def _json_or_shell(argument: str, instruction: str) -> list[str]:
    text = argument.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
    if not text:
        raise InvalidArchive(f"invalid --change {instruction!r}: it needs an argument")
    return ["/bin/sh", "-c", text]


def _pairs(argument: str, instruction: str) -> list[tuple[str, str]]:
    """`k=v k2="v 2"` or the legacy `k v...` form (ENV only)."""
    try:
        words = shlex.split(argument)
    except ValueError as exc:
        raise InvalidArchive(f"invalid --change {instruction} {argument!r}: {exc}") from None
    if not words:
        raise InvalidArchive(f"invalid --change {instruction!r}: it needs an argument")
    if "=" not in words[0]:
        if instruction != "ENV":
            raise InvalidArchive(f"invalid --change {instruction} {argument!r}: use KEY=VALUE")
        key, _, value = argument.strip().partition(" ")
        if not value.strip():
            raise InvalidArchive(f"invalid --change ENV {argument!r}: use ENV KEY=VALUE or ENV KEY VALUE")
        return [(key, value.strip())]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidArchive(f"invalid --change {instruction} {argument!r}: use KEY=VALUE")
        pairs.append((key, value))
    return pairs


def apply_changes(config: dict, changes: Iterable[str]) -> dict:
    """Apply Dockerfile-style instructions (as `docker import --change`) to a container config (`Cmd`, `Env`...)."""
    for change in changes:
        instruction, _, argument = change.strip().partition(" ")
        instruction = instruction.upper()
        argument = argument.strip()
        if instruction not in CHANGE_INSTRUCTIONS:
            raise InvalidArchive(
                f"unsupported --change instruction {change.strip().split(' ', 1)[0][:40]!r}",
                hint=f"use one of {', '.join(CHANGE_INSTRUCTIONS)}",
            )
        if instruction == "CMD":
            config["Cmd"] = _json_or_shell(argument, instruction)
        elif instruction == "ENTRYPOINT":
            config["Entrypoint"] = _json_or_shell(argument, instruction)
        elif instruction == "ENV":
            env = list(config.get("Env") or [])
            for key, value in _pairs(argument, instruction):
                env = [item for item in env if item.split("=", 1)[0] != key]
                env.append(f"{key}={value}")
            config["Env"] = env
        elif instruction == "LABEL":
            labels = dict(config.get("Labels") or {})
            labels.update(_pairs(argument, instruction))
            config["Labels"] = labels
        elif instruction == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            if not argument:
                raise InvalidArchive("invalid --change 'EXPOSE': it needs a port")
            for item in argument.split():
                port, _, proto = item.partition("/")
                proto = (proto or "tcp").lower()
                if not port.isdigit() or not 0 < int(port) < 65536 or proto not in ("tcp", "udp", "sctp"):
                    raise InvalidArchive(f"invalid --change EXPOSE port {item!r}", hint="use PORT[/tcp|udp]")
                ports[f"{int(port)}/{proto}"] = {}
            config["ExposedPorts"] = ports
        else:  # USER, WORKDIR, STOPSIGNAL (checked when a container is created from the image, as Docker's is)
            if not argument:
                raise InvalidArchive(f"invalid --change {instruction!r}: it needs an argument")
            if instruction == "STOPSIGNAL":
                config["StopSignal"] = argument
            elif instruction == "USER":
                config["User"] = argument
            else:
                previous = config.get("WorkingDir") or "/"
                config["WorkingDir"] = posixpath.normpath(posixpath.join(previous, argument))
    return config
