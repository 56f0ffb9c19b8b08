"""Network modes as the command line and the spec name them, and what each asks of the launcher.

- ``none``: pid 1 unshares a network namespace and brings ``lo`` up; nothing else.
- ``slirp4netns``, ``pasta``: the same new namespace, then pid 1 waits while the monitor starts the helper
  against it (the launcher's ``netns`` sync step) and forwards the published ports.
- ``host``: no network namespace of its own.
- ``container:ID``: the namespace of another running container, joined with ``setns``. That namespace belongs to
  the other container's user namespace, and the kernel lets only a process holding CAP_SYS_ADMIN in the owning user
  namespace join it, so a stage 1 joins that user namespace first (instead of making its own) — as podman does for the
  containers of a pod. Both containers of a user get the same id map, so the joined one maps the same ids.
"""

from __future__ import annotations

from sandbox.errors import InvalidRunOption

HELPERS = ("slirp4netns", "pasta")
MODES = ("none", "host", *HELPERS)
CONTAINER_PREFIX = "container:"
DEFAULT = "slirp4netns"


def parse_mode(text: str) -> str:
    """The mode ``--network`` (or the config) names; ``container:X`` keeps X as given (a name, id or prefix)."""
    if text in MODES:
        return text
    if text.startswith(CONTAINER_PREFIX) and text[len(CONTAINER_PREFIX):]:
        return text
    raise InvalidRunOption(
        f"network {text[:80]!r} is not supported",
        hint="use --network slirp4netns, pasta, none, host or container:NAME",
    )


def valid_stored(mode: str) -> bool:
    """Whether a stored spec's mode is one this sbx can start (``container:`` followed by a full id)."""
    if mode in MODES:
        return True
    target = mode[len(CONTAINER_PREFIX):] if mode.startswith(CONTAINER_PREFIX) else ""
    return len(target) == 64 and all(c in "0123456789abcdef" for c in target)


def joined_container(mode: str) -> str | None:
    """The id (or, before create resolved it, the name) of the container whose namespace ``mode`` joins."""
    return mode[len(CONTAINER_PREFIX):] if mode.startswith(CONTAINER_PREFIX) else None


def new_netns(mode: str) -> bool:
    """Whether the container gets a network namespace of its own (and so brings its ``lo`` up)."""
    return mode == "none" or mode in HELPERS


def needs_helper(mode: str) -> bool:
    return mode in HELPERS


def publishes(mode: str) -> bool:
    """Whether ``-p`` means anything: only a helper forwards ports from the host into a namespace."""
    return mode in HELPERS
