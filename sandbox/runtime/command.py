"""The container's command line, environment and host name, from the image config and the run flags (Docker's rules).

Pure functions: the caller reads env files and passes the host environment in; nothing here does I/O.

Environment order (a documented simplification of Docker's): one entry per name, in the order each name first
appears in ``PATH`` (default), ``HOSTNAME``, the image's Env, the env files, the ``-e`` flags, and last ``HOME``
(only when no source set it); a later source or a later duplicate replaces the value in place. Precedence is
Docker's: image < env files < ``-e``, and every source may override the defaults for PATH and HOSTNAME.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from sandbox.errors import InvalidCommand, InvalidEnv, InvalidHostname, NoCommand
from sandbox.runtime.identity import shown

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_HOSTNAME = 253
MAX_LABEL = 63
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?")
_BOM = "\ufeff"


def build_args(
    entrypoint: tuple[str, ...] | None,
    cmd: tuple[str, ...] | None,
    entrypoint_flag: str | None,
    args: tuple[str, ...],
) -> tuple[str, ...]:
    """The argv to execute: entrypoint + cmd, after ``--entrypoint`` and the arguments after the image name.

    - ``entrypoint_flag`` None: the image's ENTRYPOINT stays; ``args`` (when given) replace its CMD.
    - ``entrypoint_flag`` set (``""`` included): it replaces the image's ENTRYPOINT as one word (``""`` clears it)
      and the image's CMD is dropped; only ``args`` follow it (Docker: ``--entrypoint`` resets CMD).
    - An image ENTRYPOINT of ``[""]`` counts as none (Docker's way of clearing it).

    Raises :class:`NoCommand` when nothing is left, :class:`InvalidCommand` when a word contains NUL.
    """
    if entrypoint_flag is None:
        words = tuple(entrypoint or ())
        if words == ("",):
            words = ()
        tail = tuple(args) if args else tuple(cmd or ())
    else:
        words = (entrypoint_flag,) if entrypoint_flag else ()
        tail = tuple(args)
    result = words + tail
    if not result:
        raise NoCommand("no command specified")
    for index, word in enumerate(result):
        if "\x00" in word:
            raise InvalidCommand(f"argument {index} of the command contains a NUL byte: {shown(word)}")
    return result


def _split(entry: str, origin: str) -> tuple[str, str | None]:
    if "\x00" in entry:
        raise InvalidEnv(f"environment variable {shown(entry)} from {origin} contains a NUL byte")
    name, sep, value = entry.partition("=")
    if not name:
        raise InvalidEnv(f"invalid environment variable {shown(entry)} from {origin}: the name is empty")
    return name, (value if sep else None)


def merge_env(
    image_env: Iterable[str],
    env_flags: list[str],
    env_files: list[str],
    host_env: Mapping[str, str],
    *,
    hostname: str,
    home: str,
) -> tuple[str, ...]:
    """The process environment as ``NAME=value`` strings (see the module doc for order and precedence).

    ``env_files`` are the entries :func:`parse_env_file` returned, files in command-line order. A ``VAR`` without
    ``=`` (from a flag or a file) takes its value from ``host_env`` and is left out when the host has none; one in
    the image's Env (which never reads the host) is ignored. ``home`` is the resolved user's home; ``""`` adds no
    HOME. Raises :class:`InvalidEnv` for an empty name or a NUL byte anywhere.
    """
    merged: dict[str, str] = {"PATH": DEFAULT_PATH}
    _, hostname_value = _split(f"HOSTNAME={hostname}", "--hostname")
    merged["HOSTNAME"] = hostname_value or ""
    for entry in image_env:
        name, value = _split(entry, "the image")
        if value is not None:
            merged[name] = value
    for origin, entries in (("--env-file", env_files), ("-e", env_flags)):
        for entry in entries:
            name, value = _split(entry, origin)
            if value is None:
                value = host_env.get(name)
                if value is None:
                    continue
                _split(f"{name}={value}", "the host environment")
            merged[name] = value
    if home and "HOME" not in merged:
        _split(f"HOME={home}", "the user's passwd entry")
        merged["HOME"] = home
    return tuple(f"{name}={value}" for name, value in merged.items())


def parse_env_file(text: str, source: str) -> list[str]:
    """The entries of an env file (Docker's ``--env-file`` format), as ``VAR=value`` or bare ``VAR`` strings.

    Lines end at ``\\n`` (a ``\\r`` before it is dropped, so CRLF files work); a leading BOM is dropped; blank lines
    and lines whose first non-blank character is ``#`` are skipped; the name is trimmed of blanks on both sides
    and must then be non-empty and contain no whitespace; the value is kept literally (no quotes, no trimming).
    A bare ``VAR`` is resolved from the host by :func:`merge_env`. Raises :class:`InvalidEnv` naming ``source``
    and the line.
    """
    if text.startswith(_BOM):
        text = text[len(_BOM) :]
    entries: list[str] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        where = f"env file {shown(source, 200)} line {number}"
        if "\x00" in line:
            raise InvalidEnv(f"{where} contains a NUL byte")
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.partition("=")
        name = name.strip()
        if not name:
            raise InvalidEnv(f"{where}: no variable name")
        if any(char.isspace() for char in name):
            raise InvalidEnv(f"{where}: variable {shown(name)} contains whitespace")
        entries.append(f"{name}={value}" if sep else name)
    return entries


def parse_hostname(text: str) -> str:
    """``text`` when it is a valid RFC 1123 host name (dot-separated labels of letters, digits and inner ``-``,
    1..63 characters each, 253 in all, no trailing dot); else :class:`InvalidHostname`."""
    if not text:
        raise InvalidHostname('invalid hostname "": it must not be empty')
    if len(text) > MAX_HOSTNAME:
        raise InvalidHostname(f"invalid hostname {shown(text)}: longer than {MAX_HOSTNAME} characters")
    for label in text.split("."):
        if len(label) > MAX_LABEL:
            raise InvalidHostname(f"invalid hostname {shown(text)}: a label is longer than {MAX_LABEL} characters")
        if not _LABEL.fullmatch(label):
            raise InvalidHostname(
                f"invalid hostname {shown(text)}: labels must be letters, digits and '-', not starting or ending "
                "with '-', and not empty"
            )
    return text
