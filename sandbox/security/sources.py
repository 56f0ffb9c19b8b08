"""Where seccomp profiles come from: the shipped ones (package data, ``sandbox/policies``) or a file, read with a
size bound; and the kernel's version, which conditional rules (``minKernel``) and the filter cache depend on.

Kept apart from :mod:`sandbox.security.profile` (parsing and validation) so that a container start, which finds
its compiled filter in the cache, reads the profile's bytes without importing the parser.
"""

from __future__ import annotations

import os

from sandbox.errors import InvalidSecurityProfile

PROFILE_LIMIT = 4 * 1024 * 1024


def read_limited(path: str) -> bytes:
    """The bytes of the profile file at ``path``, at most one more than the size limit (so parse refuses it)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(PROFILE_LIMIT + 1)
    except OSError as error:
        raise InvalidSecurityProfile(
            f"cannot read seccomp profile {path}: {error.strerror or error}",
            hint="give a path to a JSON profile, a name from sbx policy ls, or unconfined",
        ) from None


def policies_dir() -> str:
    """The profiles shipped with sbx (package data: ``sandbox/policies``)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "policies")


def shipped() -> list[str]:
    """The names ``--security-opt seccomp=NAME`` accepts, sorted."""
    try:
        return sorted(entry[:-5] for entry in os.listdir(policies_dir()) if entry.endswith(".json"))
    except OSError:
        return []


def locate(choice: str) -> str:
    """``NAME`` (a shipped profile) or ``PATH`` → the file to read; InvalidSecurityProfile when it is neither."""
    if "/" in choice or choice.endswith(".json"):
        return os.path.abspath(choice)
    if choice in shipped():
        return os.path.join(policies_dir(), choice + ".json")
    raise InvalidSecurityProfile(
        f"no seccomp profile named {choice[:60]!r}",
        hint=f"use one of {', '.join(shipped())}, a path to a JSON profile, or unconfined",
    )


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """``6.1.0-18-amd64`` → (6, 1)."""
    major, _, rest = (release or os.uname().release).partition(".")
    minor = rest[:len(rest) - len(rest.lstrip("0123456789"))]
    return (int(major), int(minor)) if major.isdigit() and minor else (0, 0)
