"""Named volumes: `sbx volume create|ls|inspect|rm|prune`, `-v NAME:/path` and the API's /volumes.

A volume is a directory ``<data root>/volumes/<name>/_data`` (its parent 0700, with ``volume.json`` beside it),
bound into containers as a host directory is. The container's root is the user's own uid (see
:func:`sandbox.runtime.idmap.default_idmap`), so a new ``_data`` owned by the user (0755, as Docker makes it) is
the container root's to write; files a container writes as another user are owned by a subordinate uid on the host,
which is why removal goes through the container service (it falls back to removing inside the user namespace).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from sandbox.config import Settings
from sandbox.errors import InvalidVolumeName, StoreCorrupt, VolumeInUse, VolumeNotFound
from sandbox.valueclass import field, valueclass

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_META = "volume.json"
_DATA = "_data"


@valueclass
class Volume:
    name: str
    path: Path  # the directory containers see
    created: float
    labels: dict = field(default_factory=dict, hash=False)

    @property
    def created_text(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created))


def is_volume_name(text: str) -> bool:
    """Docker reads a bind source that is not an absolute path as a volume name."""
    return bool(_NAME.fullmatch(text)) and len(text) <= 255


class Volumes:
    def __init__(self, settings: Settings, containers=None) -> None:
        self.settings = settings
        self._containers = containers

    @property
    def root(self) -> Path:
        return Path(self.settings.data_root) / "volumes"

    @property
    def containers(self):
        if self._containers is None:
            from sandbox.service.containers import ContainerService

            self._containers = ContainerService(self.settings)
        return self._containers

    def create(self, name: str | None = None, *, labels: dict | None = None) -> Volume:
        """Make the volume (a random 64-hex name when none is given); an existing one is returned as it is."""
        name = name or os.urandom(32).hex()
        self._check_name(name)
        labels = dict(labels or {})
        if not all(isinstance(key, str) and isinstance(value, str) for key, value in labels.items()):
            raise InvalidVolumeName("volume labels must be strings", hint="use --label KEY=VALUE")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory = self.root / name
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            return self.get(name)
        try:
            (directory / _DATA).mkdir(mode=0o755)
            os.chmod(directory / _DATA, 0o755)  # whatever the umask: the container's other users may enter it
            temporary = directory / f".{_META}.tmp"
            with open(temporary, "x", encoding="utf-8") as handle:
                json.dump({"name": name, "created": time.time(), "labels": labels}, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(temporary, directory / _META)
        except BaseException:
            self.containers.remove_dir(directory)
            raise
        return self.get(name)

    def get(self, name: str) -> Volume:
        self._check_name(name)
        directory = self.root / name
        try:
            with open(directory / _META, encoding="utf-8") as handle:
                meta = json.load(handle)
        except FileNotFoundError:
            raise VolumeNotFound(f"no such volume: {name}") from None
        except (OSError, ValueError) as error:
            raise StoreCorrupt(f"volume {name} has a damaged record: {error}",
                               hint=f"remove {directory} by hand") from None
        return Volume(name, directory / _DATA, float(meta.get("created") or 0), dict(meta.get("labels") or {}))

    def source(self, name: str) -> str:
        """The host directory of ``-v NAME:/path``, the volume made on first use."""
        try:
            return str(self.get(name).path)
        except VolumeNotFound:
            return str(self.create(name).path)

    def list(self) -> list[Volume]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        volumes = []
        for name in names:
            if not is_volume_name(name):
                continue
            try:
                volumes.append(self.get(name))
            except (VolumeNotFound, StoreCorrupt):
                continue  # half made, or being removed
        return volumes

    def users(self, volume: Volume) -> list[str]:
        """The names of the containers whose spec mounts the volume."""
        from sandbox.store.containers import ContainerStore, containers_root

        root = containers_root(self.settings.data_root)
        if not root.exists():
            return []
        source = str(volume.path)
        names = []
        for record in ContainerStore(root).list():
            mounts = ((record.spec or {}).get("spec") or {}).get("mounts") or []
            if any(isinstance(mount, dict) and mount.get("source") == source for mount in mounts):
                names.append(record.name)
        return names

    def remove(self, name: str, *, force: bool = False) -> None:
        volume = self.get(name)
        users = self.users(volume)
        if users and not force:
            raise VolumeInUse(f"remove {name}: volume is in use by container {users[0]}")
        self.containers.remove_dir(self.root / name)

    def prune(self) -> tuple[list[str], int]:
        """Remove every volume no container mounts; (their names, the bytes they held)."""
        from sandbox.service.lifecycle import _tree_size

        removed, reclaimed = [], 0
        for volume in self.list():
            if self.users(volume):
                continue
            size = _tree_size(volume.path)
            self.containers.remove_dir(self.root / volume.name)
            removed.append(volume.name)
            reclaimed += size
        return removed, reclaimed

    @staticmethod
    def _check_name(name: str) -> None:
        if not is_volume_name(name):
            raise InvalidVolumeName(f"invalid volume name {name[:80]!r}")
