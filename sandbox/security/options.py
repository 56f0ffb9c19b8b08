"""The security options of one container: Docker's ``--security-opt``, ``--cap-add``, ``--cap-drop`` and
``--privileged``, as frozen data the container spec keeps (so ``start`` and ``exec`` apply the same).

- ``seccomp=NAME`` (a profile shipped in ``sandbox/policies``: ``default``, ``ci``), ``seccomp=PATH`` (a JSON
  profile in Docker's schema, read at create and kept in the spec, as Docker does), ``seccomp=unconfined``, and
  ``seccomp={...}`` (the profile's JSON itself, as the docker CLI sends a file's to the Engine API);
- ``no-new-privileges`` (also ``=true``/``=false``, and Docker's older ``:`` spelling);
- ``unmask=PATH[:PATH...]`` or ``unmask=ALL`` (see :mod:`sandbox.security.paths`);
- ``--privileged``: every capability of the user namespace, no seccomp filter, nothing masked. In a rootless
  container that is still no more than the user's own privileges on the host, but it gives up every protection
  of the host's kernel surface (mount, unshare, keyctl, bpf, ...) and of sbx's read-only mounts.
"""

from __future__ import annotations

from sandbox.errors import InvalidRunOption
from sandbox.security import capabilities
from sandbox.valueclass import valueclass

UNCONFINED = "unconfined"
DEFAULT_PROFILE = "default"
_PROFILE_FILE = "file"  # ``seccomp`` of a spec whose profile came from a path: the text is in ``seccomp_profile``


@valueclass
class SecurityOptions:
    seccomp: str = DEFAULT_PROFILE  # a shipped profile's name, "file" (text in seccomp_profile), or "unconfined"
    seccomp_profile: str | None = None  # the profile's JSON text when it came from a path
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    no_new_privileges: bool = False
    unmask: tuple[str, ...] = ()

    @property
    def capabilities(self) -> int:
        """The capability mask the container's root gets (bounding, permitted, effective)."""
        return capabilities.container_set(self.cap_add, self.cap_drop, self.privileged)

    @property
    def confined(self) -> bool:
        return self.seccomp != UNCONFINED and not self.privileged

    @property
    def unmasked(self) -> tuple[str, ...]:
        return ("ALL",) if self.privileged else self.unmask

    def profile_source(self) -> tuple[bytes, str] | None:
        """(the profile's bytes, its name for errors), or None when unconfined."""
        if not self.confined:
            return None
        if self.seccomp == _PROFILE_FILE:
            return (self.seccomp_profile or "").encode(), "given with --security-opt seccomp=PATH"
        from sandbox.security import sources

        return sources.read_limited(sources.locate(self.seccomp)), self.seccomp

    def to_json(self) -> dict:
        return {"seccomp": self.seccomp, "seccomp_profile": self.seccomp_profile, "cap_add": list(self.cap_add),
                "cap_drop": list(self.cap_drop), "privileged": self.privileged,
                "no_new_privileges": self.no_new_privileges, "unmask": list(self.unmask)}

    @classmethod
    def from_json(cls, data: object) -> SecurityOptions:
        """ValueError names what is wrong (the spec reader turns it into StoreCorrupt)."""
        if not isinstance(data, dict) or set(data) != set(cls().to_json()):
            raise ValueError("must hold exactly the fields " + ", ".join(sorted(cls().to_json())))
        strings = {key: data[key] for key in ("cap_add", "cap_drop", "unmask")}
        if not all(isinstance(value, list) and all(isinstance(item, str) for item in value)
                   for value in strings.values()):
            raise ValueError("cap_add, cap_drop and unmask must be lists of strings")
        if not isinstance(data["seccomp"], str) or not (data["seccomp_profile"] is None
                                                        or isinstance(data["seccomp_profile"], str)):
            raise ValueError("seccomp must be a string and seccomp_profile a string or null")
        if not all(isinstance(data[key], bool) for key in ("privileged", "no_new_privileges")):
            raise ValueError("privileged and no_new_privileges must be true or false")
        if data["seccomp"] == _PROFILE_FILE and data["seccomp_profile"] is None:
            raise ValueError("a profile from a file needs its text")
        try:
            for name in (*data["cap_add"], *data["cap_drop"]):
                capabilities.parse_name(name)
        except InvalidRunOption as error:
            raise ValueError(error.message) from None
        return cls(data["seccomp"], data["seccomp_profile"], tuple(data["cap_add"]), tuple(data["cap_drop"]),
                   data["privileged"], data["no_new_privileges"], tuple(data["unmask"]))


def parse(security_opts: list[str], cap_add: list[str] = (), cap_drop: list[str] = (), privileged: bool = False,
          default_profile: str | None = None) -> SecurityOptions:
    """Docker's flags → SecurityOptions; InvalidRunOption / InvalidSecurityProfile name the bad one. A profile
    from a path is read here (at create), so a later change to the file does not change the container."""
    seccomp, text, no_new_privileges, unmask = default_profile or DEFAULT_PROFILE, None, False, []
    for option in security_opts:
        key, sep, value = option.partition("=")
        if not sep:
            key, sep, value = option.partition(":")
        if key == "seccomp" and sep and value:
            if value == UNCONFINED:
                seccomp, text = UNCONFINED, None
            elif value.startswith("{"):  # the profile's JSON itself: what the docker CLI sends to the API
                seccomp, text = _PROFILE_FILE, _checked_text(value.encode("utf-8"), "given inline")
            else:
                from sandbox.security import sources

                path = sources.locate(value)
                if "/" in value or value.endswith(".json"):
                    seccomp, text = _PROFILE_FILE, _profile_text(path)
                else:
                    seccomp, text = value, None
        elif key == "no-new-privileges" and (not sep or value in ("true", "false")):
            no_new_privileges = value != "false"
        elif key == "unmask" and sep and value:
            unmask += [path for path in value.split(":") if path]
        else:
            raise InvalidRunOption(
                f"invalid --security-opt {option[:80]!r}",
                hint="use seccomp=NAME|PATH|unconfined, no-new-privileges or unmask=PATH[:PATH...]|ALL",
            )
    for path in unmask:
        if path != "ALL" and not path.startswith("/"):
            raise InvalidRunOption(f"invalid unmask path {path[:80]!r}", hint="give absolute paths, or ALL")
    cap_add = tuple(capabilities.parse_name(name) for name in cap_add)
    cap_drop = tuple(capabilities.parse_name(name) for name in cap_drop)
    return SecurityOptions(seccomp, text, cap_add, cap_drop, privileged, no_new_privileges, tuple(unmask))


def _profile_text(path: str) -> str:
    """The profile's text, checked to parse (read once: what is checked is what the spec keeps)."""
    from sandbox.security import sources

    return _checked_text(sources.read_limited(path), path)


def _checked_text(raw: bytes, name: str) -> str:
    from sandbox.errors import InvalidSecurityProfile
    from sandbox.security import profile

    profile.parse(raw, name)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSecurityProfile(f"invalid seccomp profile {name}: it is not UTF-8 text") from None
