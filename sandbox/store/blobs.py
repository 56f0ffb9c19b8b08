"""The store's blobs: content-addressed files, written once through a locked ingest, leased until a record needs them.

Layout under the store root::

    blobs/sha256/<hex>      complete, verified blobs (0444); renamed in whole from ingest/, never written in place
    ingest/<random>.partial blobs being downloaded, each flock-ed by its writer while in use
    leases/<random>.lease   per-process lists of blobs written but not yet referenced by a record
    locks/blob-sha256-<hex>.lock  one per blob while it is being written or collected
    damaged/<algorithm>-<hex>     notes on blob files found to hash wrong (see :meth:`BlobStore.note_damage`)

One blob is written once: writers of a digest queue on its lock and those that get it after the first find the blob
present. A pull stores its blobs before it adds the record that references them; in that window a parallel ``rmi``
would see them unreferenced, so each process lists what it has written in its own flock-ed lease file until the
record references it (:meth:`BlobStore.lease_release`), and the collector keeps leased blobs.
"""

from __future__ import annotations

import _thread
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from sandbox.errors import DigestMismatch, InvalidDigest, SizeMismatch, StoreCorrupt, StoreError
from sandbox.oci.digest import Digest
from sandbox.store.atomic import ensure_private_dir, fsync_dir, listdir, store_error, write_all, write_atomic
from sandbox.store.locks import FileLock, create_locked, read_if_locked
from sandbox.valueclass import valueclass

ALGORITHMS = ("sha256", "sha512")
_BLOB_MODE = 0o444
_READ_CHUNK = 1024 * 1024
_DIGEST_TEXT = re.compile(rb"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")


@valueclass
class Blob:
    digest: Digest
    path: Path
    size: int


class BlobIngest:
    """Writes one blob into a locked ``.partial`` file, hashing as it goes; :meth:`commit` makes it a blob.

    It satisfies the registry's BlobWriter protocol (``written``, ``write``, ``reset``, ``commit``). Writing more
    bytes than the expected size fails at once, so an endless body cannot fill the disk.
    """

    def __init__(self, blobs: BlobStore, digest: Digest, size: int | None, fd: int, path: Path) -> None:
        self._blobs = blobs
        self.digest = digest
        self.size = size if size is not None and size >= 0 else None
        self.path = path
        self._fd: int | None = fd
        self._hasher = digest.hasher()
        self._written = 0
        self._committed = False

    @property
    def written(self) -> int:
        return self._written

    @property
    def committed(self) -> bool:
        return self._committed

    def write(self, data: bytes) -> None:
        fd = self._open_fd()
        if self.size is not None and self._written + len(data) > self.size:
            raise SizeMismatch(
                f"size mismatch for {self.digest}: expected {self.size} bytes, got more",
                digest=self.digest,
                expected=self.size,
                actual=self._written + len(data),
            )
        write_all(fd, data, self.path)
        self._hasher.update(data)
        self._written += len(data)

    def reset(self) -> None:
        """Start over (a download restarted from byte 0): truncate the partial file and restart the hash."""
        fd = self._open_fd()
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
        except OSError as exc:
            raise store_error(exc, "truncate", self.path) from exc
        self._hasher = self.digest.hasher()
        self._written = 0

    def commit(self) -> None:
        """Verify size then digest, make the bytes durable, and rename the file into blobs/."""
        if self._committed:
            return
        fd = self._open_fd()
        if self.size is not None and self._written != self.size:
            raise SizeMismatch(
                f"size mismatch for {self.digest}: expected {self.size} bytes, got {self._written}",
                digest=self.digest,
                expected=self.size,
                actual=self._written,
            )
        actual = Digest(self.digest.algorithm, self._hasher.hexdigest())
        if actual != self.digest:
            raise DigestMismatch(
                f"digest mismatch: expected {self.digest}, got {actual}", digest=self.digest, actual=actual
            )
        try:
            os.fchmod(fd, _BLOB_MODE)
            os.fsync(fd)
        except OSError as exc:
            raise store_error(exc, "fsync", self.path) from exc
        # Leased before it becomes visible, so no collector can see it unreferenced and unleased.
        self._blobs.lease_add(self.digest)
        target = self._blobs.path(self.digest)
        ensure_private_dir(target.parent)
        try:
            os.rename(self.path, target)
        except OSError as exc:
            raise store_error(exc, "rename", self.path) from exc
        self._committed = True
        self._close()
        fsync_dir(target.parent)

    def _open_fd(self) -> int:
        if self._fd is None:
            raise StoreError(f"ingest of {self.digest} is already finished")
        return self._fd

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def _discard(self) -> None:
        if not self._committed and self._fd is not None:
            with suppress(OSError):
                os.unlink(self.path)  # still under our flock, so no collector races us
        self._close()


class BlobStore:
    """The blobs of one store root; its lease (what this process wrote and no record needs yet) is per process."""

    def __init__(self, root: Path, locks_dir: Path, lock_timeout: float) -> None:
        self.blobs_dir = root / "blobs"
        self.ingest_dir = root / "ingest"
        self.leases_dir = root / "leases"
        self.damaged_dir = root / "damaged"
        self.locks_dir = locks_dir
        self.lock_timeout = lock_timeout
        self._lease_mutex = _thread.allocate_lock()  # threading.Lock itself: no threading import on a start
        self._lease_fd: int | None = None
        self._lease_path: Path | None = None
        self._lease_pid = 0
        self._leased: set[Digest] = set()

    def close(self) -> None:
        """Drop this process's lease (blobs written but never added to a record become collectable)."""
        with self._lease_mutex:
            fd, self._lease_fd = self._lease_fd, None
            if fd is None:
                return
            if self._lease_pid == os.getpid() and self._lease_path is not None:
                with suppress(OSError):
                    os.unlink(self._lease_path)
            os.close(fd)
            self._lease_path = None
            self._leased.clear()

    def lock(self, digest: Digest, timeout: float | None = None) -> FileLock:
        path = self.locks_dir / f"blob-{digest.algorithm}-{digest.hex}.lock"
        return FileLock(path, self.lock_timeout if timeout is None else timeout, remove=True)

    def path(self, digest: Digest) -> Path:
        return self.blobs_dir / digest.algorithm / digest.hex

    def has(self, digest: Digest) -> bool:
        try:
            return stat.S_ISREG(os.stat(self.path(digest)).st_mode)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise store_error(exc, "stat", self.path(digest)) from exc

    def read(self, digest: Digest, limit: int | None = None) -> bytes:
        """The blob's bytes, verified against its digest (StoreCorrupt if missing, damaged or over ``limit``)."""
        path = self.path(digest)
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if limit is not None and size > limit:
                    raise StoreCorrupt(
                        f"blob {digest} is {size} bytes, more than the {limit} allowed", path=str(path), digest=digest
                    )
                data = handle.read()
        except FileNotFoundError:
            raise StoreCorrupt(f"blob {digest} is missing from the store", path=str(path), digest=digest) from None
        except OSError as exc:
            raise store_error(exc, "read", path) from exc
        actual = Digest.of(data, digest.algorithm)
        if actual != digest:
            self.note_damage(digest, f"content is damaged: it hashes to {actual}")
            raise StoreCorrupt(
                f"blob {digest} is damaged: its content hashes to {actual}", path=str(path), digest=digest
            )
        return data

    def put(self, data: bytes, digest: Digest | None = None) -> Digest:
        """Store ``data`` (verified against ``digest`` when given); storing a present blob is a no-op."""
        actual = Digest.of(data, digest.algorithm if digest is not None else "sha256")
        if digest is not None and actual != digest:
            raise DigestMismatch(f"digest mismatch: expected {digest}, got {actual}", digest=digest, actual=actual)
        with self.ingest(actual, len(data)) as writer:
            if writer is not None:
                writer.write(data)
                writer.commit()
        return actual

    @contextmanager
    def ingest(self, digest: Digest, size: int | None) -> Iterator[BlobIngest | None]:
        """Write one blob: yields None when it is already present, else a :class:`BlobIngest` to fill and commit.

        Holds the blob's lock throughout, so parallel pulls of one image write each blob once: the others wait,
        then find it present. Without a commit (or on an exception) the partial file is removed.
        Go through here even for blobs you expect to be present: it leases them against a parallel collector.
        """
        with self.lock(digest):
            if self.has(digest):
                self.lease_add(digest)
                yield None
                return
            fd, path = create_locked(self.ingest_dir, ".partial")
            writer = BlobIngest(self, digest, size, fd, path)
            try:
                yield writer
            finally:
                writer._discard()

    def scan(self) -> tuple[list[Blob], list[Path]]:
        """Blob files (digest, path, size) and the paths under blobs/ that are not blob names."""
        blobs: list[Blob] = []
        strays: list[Path] = []
        for algorithm_dir in listdir(self.blobs_dir):
            directory = self.blobs_dir / algorithm_dir
            if algorithm_dir not in ALGORITHMS:
                strays.append(directory)
                continue
            for name in listdir(directory):
                path = directory / name
                try:
                    digest = Digest.parse(f"{algorithm_dir}:{name}")
                except InvalidDigest:
                    strays.append(path)
                    continue
                try:
                    info = os.lstat(path)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise store_error(exc, "stat", path) from exc
                if not stat.S_ISREG(info.st_mode):
                    strays.append(path)
                    continue
                blobs.append(Blob(digest, path, info.st_size))
        return blobs, strays

    def lease_add(self, digest: Digest) -> None:
        with self._lease_mutex:
            if digest in self._leased:
                return
            if self._lease_fd is None or self._lease_pid != os.getpid():
                # A forked child gets its own lease: the inherited descriptor shares the parent's file and lock.
                self._lease_fd, self._lease_path = create_locked(self.leases_dir, ".lease")
                self._lease_pid = os.getpid()
                self._leased.clear()
            assert self._lease_path is not None
            write_all(self._lease_fd, f"{digest}\n".encode(), self._lease_path)
            self._leased.add(digest)

    def lease_release(self, digests: Iterable[Digest]) -> None:
        """Called under the store lock once a record references ``digests``."""
        with self._lease_mutex:
            if self._lease_fd is None or self._lease_pid != os.getpid():
                return
            before = len(self._leased)
            self._leased.difference_update(digests)
            if len(self._leased) == before:
                return
            assert self._lease_path is not None
            try:
                os.ftruncate(self._lease_fd, 0)
                os.lseek(self._lease_fd, 0, os.SEEK_SET)
            except OSError as exc:
                raise store_error(exc, "truncate", self._lease_path) from exc
            write_all(self._lease_fd, "".join(f"{d}\n" for d in self._leased).encode(), self._lease_path)

    def leased_digests(self) -> set[Digest]:
        """Digests leased by live processes (this one included); removes the leases of dead ones."""
        with self._lease_mutex:
            leased = set(self._leased) if self._lease_pid == os.getpid() else set()
            own = self._lease_path
        for name in listdir(self.leases_dir):
            path = self.leases_dir / name
            if path == own:
                continue
            raw = read_if_locked(path)
            if raw is not None:
                leased.update(_digests_in(raw))
        return leased

    def damage_notes(self) -> dict[Digest, dict]:
        notes: dict[Digest, dict] = {}
        directory = self.damaged_dir
        for name in listdir(directory):
            algorithm, _, hex_digest = name.partition("-")
            try:
                digest = Digest.parse(f"{algorithm}:{hex_digest}")
                note = json.loads((directory / name).read_bytes())
            except (InvalidDigest, OSError, ValueError):
                continue
            if isinstance(note, dict):
                notes[digest] = note
        return notes

    def note_damage(self, digest: Digest, reason: str) -> None:
        """Remember that the blob file now at ``digest``'s path hashes wrong (best effort: a note, not a record)."""
        with suppress(OSError):
            info = os.stat(self.path(digest))
            directory = self.damaged_dir
            directory.mkdir(mode=0o700, exist_ok=True)
            note = {"file": file_identity(info), "reason": reason}
            write_atomic(directory / f"{digest.algorithm}-{digest.hex}", json.dumps(note).encode())

    def verify(self, blob: Blob) -> Digest:
        """What the blob file hashes to now (FileNotFoundError when it was collected meanwhile)."""
        return hash_file(blob.path, blob.digest.algorithm)


def _digests_in(raw: bytes) -> set[Digest]:
    found = set()
    for match in _DIGEST_TEXT.finditer(raw):
        found.add(Digest.parse(match.group(0).decode()))
    return found


def file_identity(info: os.stat_result) -> list[int]:
    """Which file this is, as far as a damage note cares: replaced or rewritten files differ."""
    return [info.st_ino, info.st_size, info.st_mtime_ns]


def hash_file(path: Path, algorithm: str) -> Digest:
    import hashlib  # here: reading records and resolving images hash nothing

    hasher = hashlib.new(algorithm)
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_READ_CHUNK):
                hasher.update(chunk)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise store_error(exc, "read", path) from exc
    return Digest(algorithm, hasher.hexdigest())
