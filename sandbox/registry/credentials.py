"""Stored registry credentials: sbx's own ``auth.json`` first, then Docker's ``config.json``.

Both files use Docker's layout::

    {"auths": {"registry.example.com": {"auth": "base64(user:password)"}}}

sbx writes only its own file (``Settings.auth_file``, mode 0600 in a 0700 directory, temp file → fsync → rename).
Docker's file is read, never written: its keys may be ``host``, ``https://host``, ``http://host/v2/`` or, for
Docker Hub, ``https://index.docker.io/v1/``; an entry holds either ``auth`` or ``username`` and ``password``.
``credsStore``/``credHelpers`` (external helper programs) are ignored: sbx never executes them.

Registry names are normalised so that ``docker.io``, ``index.docker.io`` and ``registry-1.docker.io`` are one key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Protocol

from sandbox.errors import ConfigError

DOCKER_HUB = "docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
MAX_AUTH_FILE = 1024 * 1024


class CredentialSource(Protocol):
    """What the auth flow needs: a (username, password) for a registry name, or None."""

    def get(self, registry: str) -> tuple[str, str] | None: ...


def normalise_registry(name: str) -> str:
    """``https://index.docker.io/v1/`` → ``docker.io``; ``https://host:5000/v2/`` → ``host:5000``."""
    text = name.strip()
    lowered = text.lower()
    for prefix in ("https://", "http://"):
        if lowered.startswith(prefix):
            text = text[len(prefix) :]
            break
    host = text.split("/", 1)[0].lower()
    return DOCKER_HUB if host in _HUB_ALIASES else host


def _decode_entry(entry: object) -> tuple[str, str] | None:
    if not isinstance(entry, dict):
        return None
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        username, sep, password = decoded.partition(":")
        if sep and username:
            return username, password
        return None
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and username and isinstance(password, str):
        return username, password
    return None


def _lookup(auths: dict, registry: str) -> tuple[str, str] | None:
    wanted = normalise_registry(registry)
    keys = [key for key in auths if isinstance(key, str) and normalise_registry(key) == wanted]
    # An exact key wins over a spelled-out one, so "host" beats "https://host/v2/".
    keys.sort(key=lambda key: (key != wanted, key))
    for key in keys:
        found = _decode_entry(auths[key])
        if found:
            return found
    return None


class CredentialStore:
    """Read and write credentials; ``get`` tries sbx's file, then Docker's."""

    def __init__(self, auth_file: Path, docker_config: Path | None = None) -> None:
        self.auth_file = Path(auth_file)
        self.docker_config = Path(docker_config) if docker_config else None

    def get(self, registry: str) -> tuple[str, str] | None:
        found = _lookup(self._read_own().get("auths", {}), registry)
        if found:
            return found
        if self.docker_config is not None:
            return _lookup(self._read_docker(), registry)
        return None

    def set(self, registry: str, username: str, password: str) -> None:
        if not username or ":" in username or any(c in username + password for c in "\r\n\0"):
            raise ConfigError("invalid username: it must be non-empty without ':' or control characters")
        data = self._read_own()
        auths = data.setdefault("auths", {})
        key = normalise_registry(registry)
        for other in [k for k in auths if normalise_registry(k) == key]:
            del auths[other]
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        auths[key] = {"auth": token}
        self._write_own(data)

    def remove(self, registry: str) -> bool:
        data = self._read_own()
        auths = data.get("auths", {})
        key = normalise_registry(registry)
        doomed = [k for k in auths if normalise_registry(k) == key]
        if not doomed:
            return False
        for other in doomed:
            del auths[other]
        self._write_own(data)
        return True

    # -- files ------------------------------------------------------------------------------------------------

    def _read_own(self) -> dict:
        try:
            with open(self.auth_file, "rb") as handle:
                raw = handle.read(MAX_AUTH_FILE + 1)
        except FileNotFoundError:
            return {"auths": {}}
        except OSError as exc:
            raise ConfigError(f"cannot read credentials file {self.auth_file}: {exc.strerror or exc}") from None
        try:
            if len(raw) > MAX_AUTH_FILE:
                raise ValueError("too large")
            data = json.loads(raw) if raw.strip() else {}
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict) or not isinstance(data.setdefault("auths", {}), dict):
            raise ConfigError(
                f"credentials file {self.auth_file} is damaged",
                hint=f"remove {self.auth_file} and run sbx login again",
            )
        return data

    def _read_docker(self) -> dict:
        # Docker's file belongs to another tool: anything unreadable or odd in it means "no credentials there".
        try:
            with open(self.docker_config, "rb") as handle:  # type: ignore[arg-type]
                raw = handle.read(MAX_AUTH_FILE + 1)
            data = json.loads(raw) if len(raw) <= MAX_AUTH_FILE else None
        except (OSError, ValueError, RecursionError):
            return {}
        auths = data.get("auths") if isinstance(data, dict) else None
        return auths if isinstance(auths, dict) else {}

    def _write_own(self, data: dict) -> None:
        directory = self.auth_file.parent
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
            descriptor, temp_name = tempfile.mkstemp(prefix=".auth-", suffix=".tmp", dir=directory)
        except OSError as exc:
            raise ConfigError(f"cannot write credentials to {directory}: {exc.strerror or exc}") from None
        try:
            with os.fdopen(descriptor, "wb") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(json.dumps(data, indent=2, sort_keys=True).encode() + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, self.auth_file)
            directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(directory_fd)
            finally:
                os.close(directory_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise ConfigError(f"cannot write credentials file {self.auth_file}: {exc.strerror or exc}") from None


class StaticCredentials:
    """One username and password not (yet) stored: what ``sbx login`` checks with ``ping`` before storing them.

    With ``registry`` they are given only for that registry name (so a mirror endpoint never gets them);
    without, for whatever endpoint asks. The auth flow's host rules apply either way: they go only to the
    registry's own host (or Docker Hub's auth server), never to a realm or redirect target elsewhere.
    """

    def __init__(self, username: str, password: str, registry: str | None = None) -> None:
        self._pair = (username, password)
        self._registry = normalise_registry(registry) if registry else None

    def get(self, registry: str) -> tuple[str, str] | None:
        if self._registry is not None and normalise_registry(registry) != self._registry:
            return None
        return self._pair

    def __repr__(self) -> str:
        return f"StaticCredentials({self._pair[0]!r}, '***', registry={self._registry!r})"
