"""The hostile tar reader for image archives (`load`): every member name checked up front, links kept inside.

- every member name is validated: no absolute names, no ``..`` component, no duplicate files; symbolic and hard
  links may only point at other members inside the archive (skopeo's legacy ``<id>/layer.tar`` links), and only
  regular files are ever read;
- members are counted (at most :data:`MAX_MEMBERS`), link chains followed at most :data:`MAX_LINK_HOPS` hops, and
  headers are bounded (:class:`sandbox.store.tarheaders.BoundedTarInfo`).
"""

from __future__ import annotations

import posixpath
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from sandbox.errors import InvalidArchive
from sandbox.oci.manifest import MAX_MANIFEST_BYTES
from sandbox.store.tarheaders import BoundedTarInfo

MAX_MEMBERS = 200_000
MAX_LINK_HOPS = 16
CHUNK = 1 << 20


def member_name(name: str, *, what: str = "archive member") -> str:
    """The normalised name of an archive member ("./a//b/" → "a/b"); absolute names and ``..`` are refused."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise InvalidArchive(f"invalid {what} name {name!r}")
    if name.startswith("/"):
        raise InvalidArchive(f"unsafe {what} {name[:200]!r}: absolute names are not allowed")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidArchive(f"unsafe {what} {name[:200]!r}: it leaves the archive")
    if not parts:
        raise InvalidArchive(f"invalid {what} name {name!r}")
    return "/".join(parts)


def _link_target(name: str, info: tarfile.TarInfo) -> str:
    """Where a link member points, as a member name; links leaving the archive are refused."""
    target = info.linkname
    if info.issym():
        if not target or target.startswith("/"):
            raise InvalidArchive(f"unsafe archive member {name!r}: symlink to {target[:200]!r} leaves the archive")
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if joined == ".." or joined.startswith("../") or joined == ".":
            raise InvalidArchive(f"unsafe archive member {name!r}: symlink to {target[:200]!r} leaves the archive")
        return member_name(joined)
    return member_name(target, what=f"hardlink target of {name!r}")


class ImageArchive:
    """A tar archive opened for reading with every member name checked up front (random access)."""

    def __init__(self, path: Path | str, *, label: str | None = None) -> None:
        self.label = label or str(path)
        self.members: dict[str, tarfile.TarInfo] = {}
        self.links: dict[str, str] = {}
        try:
            self._tar = tarfile.open(path, "r:*", tarinfo=BoundedTarInfo)  # noqa: SIM115 - closed by close()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
                raise
            raise InvalidArchive(f"{self.label} is not a tar archive ({str(exc)[:120]})") from None
        try:
            self._scan()
        except BaseException:
            self._tar.close()
            raise

    def _scan(self) -> None:
        count = 0
        while True:
            try:
                info = self._tar.next()
            except (tarfile.TarError, EOFError, zlib.error) as exc:
                raise InvalidArchive(f"{self.label} is a damaged tar archive ({str(exc)[:120]})") from None
            if info is None:
                break
            count += 1
            if count > MAX_MEMBERS:
                raise InvalidArchive(f"{self.label} has more than {MAX_MEMBERS} members")
            name = member_name(info.name)
            if info.isdir():
                self.members.setdefault(name, info)
                continue
            if name in self.members:
                raise InvalidArchive(f"archive member {name!r} appears twice in {self.label}")
            if info.issym() or info.islnk():
                self.links[name] = _link_target(name, info)
            self.members[name] = info
        self._tar.members = []  # tarfile keeps its own list; ours is enough

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> ImageArchive:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def has(self, name: str) -> bool:
        return name in self.members

    def resolve(self, name: str) -> tarfile.TarInfo:
        """The regular file a (validated) name refers to, following links that stay inside the archive."""
        current = member_name(name, what="path named in the archive")
        for _ in range(MAX_LINK_HOPS):
            info = self.members.get(current)
            if info is None:
                raise InvalidArchive(f"{self.label} has no file {current!r}")
            if current in self.links:
                current = self.links[current]
                continue
            if not info.isreg():
                raise InvalidArchive(f"archive member {current!r} is not a regular file")
            return info
        raise InvalidArchive(f"archive member {name!r}: too many levels of links")

    def read(self, name: str, limit: int = MAX_MANIFEST_BYTES) -> bytes:
        info = self.resolve(name)
        if info.size > limit:
            raise InvalidArchive(f"archive member {name!r} is larger than {limit} bytes")
        with self.open(info) as handle:
            data = handle.read(limit + 1)
        if len(data) != info.size:
            raise InvalidArchive(f"archive member {name!r} is truncated")
        return data

    def open(self, info: tarfile.TarInfo) -> IO[bytes]:
        handle = self._tar.extractfile(info)
        if handle is None:  # pragma: no cover - resolve() only returns regular files
            raise InvalidArchive(f"archive member {info.name!r} is not a regular file")
        return handle

    def chunks(self, info: tarfile.TarInfo) -> Iterator[bytes]:
        try:
            with self.open(info) as handle:
                while chunk := handle.read(CHUNK):
                    yield chunk
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise InvalidArchive(f"{self.label} is a damaged tar archive ({str(exc)[:120]})") from None
