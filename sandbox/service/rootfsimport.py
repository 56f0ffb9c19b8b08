"""`import`'s rootfs stream: a rootfs tar (plain, gzip or zstd) checked, hashed and gzip-compressed in one pass.

Its member names are hostile input: absolute names are rooted by the unpacker later, but no ``..`` component (nor
in hardlink targets) and no NUL byte passes, and the number of members is bounded.
"""

from __future__ import annotations

import hashlib
import tarfile
import zlib
from pathlib import Path
from typing import IO, BinaryIO

from sandbox.errors import InvalidArchive, InvalidLayer
from sandbox.oci.decompress import LayerReader, sniff
from sandbox.oci.digest import Digest
from sandbox.store.tarheaders import BoundedTarInfo

MAX_MEMBERS = 2_000_000
CHUNK = 1 << 20


class _Tee:
    """A read-only stream that hashes (and optionally gzip-compresses) what is read through it."""

    def __init__(self, source: IO[bytes], out: BinaryIO | None) -> None:
        self._source = source
        self._out = out
        self._compress = zlib.compressobj(6, zlib.DEFLATED, 31) if out is not None else None
        self.diff = hashlib.sha256()
        self.blob = hashlib.sha256()
        self.blob_size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size if size is not None and size >= 0 else CHUNK)
        if data:
            self.diff.update(data)
            if self._compress is not None:
                self._write(self._compress.compress(data))
        return data

    def _write(self, data: bytes) -> None:
        if data and self._out is not None:
            self._out.write(data)
            self.blob.update(data)
            self.blob_size += len(data)

    def drain(self) -> None:
        while self.read(CHUNK):
            pass
        if self._compress is not None:
            self._write(self._compress.flush())


def check_rootfs_member(info: tarfile.TarInfo) -> None:
    """A rootfs entry: absolute names are rooted by the unpacker, but no ``..`` component (nor in hardlinks)."""
    for what, name in (("member", info.name), ("hardlink target", info.linkname if info.islnk() else "")):
        if name and ".." in name.split("/"):
            raise InvalidArchive(f"unsafe rootfs archive {what} {name[:200]!r}: it leaves the root")
        if "\0" in name:
            raise InvalidArchive(f"invalid rootfs archive {what} name {name[:200]!r}")


def rootfs_layer(path: Path, tmp: Path, label: str) -> tuple[Path, Digest, int, Digest]:
    """Check the rootfs tar's members and hash it; returns (gzip blob path, its digest, size, diff_id)."""
    with open(path, "rb") as handle:
        compression = sniff(handle.read(4))
        handle.seek(0)
        out = None if compression == "gzip" else open(tmp / "layer.tar.gz", "wb")  # noqa: SIM115
        try:
            source = handle if compression == "none" else LayerReader(handle, compression)
            tee = _Tee(source, out)
            count = 0
            with tarfile.open(fileobj=tee, mode="r|", tarinfo=BoundedTarInfo) as tar:  # type: ignore[call-overload]
                for info in tar:
                    count += 1
                    if count > MAX_MEMBERS:
                        raise InvalidArchive(f"rootfs archive {label} has too many members")
                    check_rootfs_member(info)
            tee.drain()
        except (InvalidLayer, tarfile.TarError, EOFError) as exc:
            raise InvalidArchive(
                f"{label} is not a valid rootfs tar archive (plain, gzip or zstd): {str(exc)[:120]}"
            ) from None
        finally:
            if out is not None:
                out.close()
    diff_id = Digest("sha256", tee.diff.hexdigest())
    if compression == "gzip":
        hasher, size = hashlib.sha256(), 0
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                hasher.update(chunk)
                size += len(chunk)
        return path, Digest("sha256", hasher.hexdigest()), size, diff_id
    return tmp / "layer.tar.gz", Digest("sha256", tee.blob.hexdigest()), tee.blob_size, diff_id
