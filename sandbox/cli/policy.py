"""`sbx policy ls` and `sbx policy check FILE`: the seccomp profiles sbx ships, and what a profile does."""

from __future__ import annotations

from sandbox.cli.params import Argument, Option
from sandbox.cli.render import out, table


def ls(quiet: bool = Option(False, "--quiet", "-q", help="Only show names.")) -> None:
    """List the seccomp profiles shipped with sbx (--security-opt seccomp=NAME)."""
    import json

    from sandbox.config import load_settings
    from sandbox.security import sources

    configured = load_settings().seccomp_profile or "default"
    rows = []
    for name in sources.shipped():
        if quiet:
            out(name)
            continue
        try:
            with open(sources.locate(name), "rb") as handle:
                comment = str(json.load(handle).get("comment", ""))
        except (OSError, ValueError):
            comment = "(unreadable)"
        rows.append((name + (" *" if name == configured else ""), comment))
    if not quiet:
        out(table(("NAME", "DESCRIPTION"), rows))


def check(
    path: str = Argument(..., metavar="FILE|NAME"),
    cap_add: list[str] = Option([], "--cap-add", help="Resolve the profile for these added capabilities."),
    cap_drop: list[str] = Option([], "--cap-drop", help="Resolve the profile without these capabilities."),
) -> None:
    """Validate a seccomp profile (Docker's JSON schema) and show what it allows and refuses."""
    from sandbox.security import capabilities, compiler, profile, sources

    loaded = profile.load(sources.locate(path))
    caps = capabilities.container_set(tuple(cap_add), tuple(cap_drop))
    summary = compiler.summarize(loaded, caps)
    out(f"profile: {loaded.name} ({loaded.digest[:19]})")
    out(f"valid: compiles to {summary.instructions} BPF instructions for {', '.join(summary.arches)}")
    out(f"capabilities: {', '.join(capabilities.names(caps)) or 'none'}")
    out(f"no_new_privs: {'asked by the profile' if loaded.no_new_privs else 'not asked'}")
    out(f"other syscalls: {summary.default}")
    out(f"allowed ({len(summary.allowed)}): {' '.join(summary.allowed)}")
    out(f"by argument ({len(summary.conditional)}): {'; '.join(summary.conditional)}")
    out(f"refused ({len(summary.refused)}): {', '.join(summary.refused)}")
    if summary.skipped:
        out(f"not enforced ({len(summary.skipped)}): {'; '.join(summary.skipped)}")
