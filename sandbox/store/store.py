"""The local store: content-addressed blobs, image records and tags, garbage collection.

Layout under the root (every directory 0700, so setuid files inside images are out of other users' reach)::

    blobs/sha256/<hex>      complete, verified blobs (0444); renamed in whole from ingest/, never written in place
    ingest/<random>.partial blobs being downloaded, each flock-ed by its writer while in use
    images/sha256/<hex>.json one record per image, named by its id (the config digest); tags live in the records
    leases/<random>.lease   per-process lists of blobs written but not yet referenced by a record (see below)
    locks/store.lock        taken to change records or to collect garbage
    locks/blob-sha256-<hex>.lock  one per blob while it is being written or collected

Crash safety: every file appears by rename, so a SIGKILL at any point leaves either nothing or a complete item. A
writer's flock dies with its process, so the next command tells a dead writer's ``.partial`` (unlocked: removed)
from a live one (locked: kept).

Concurrency: one blob is written once, because writers of a digest queue on its lock and those that get it after
the first find the blob present. Records change only under the store lock. A pull stores its blobs before it adds
the record that references them; in that window a parallel ``rmi`` would see them unreferenced, so each process
lists what it has written in its own flock-ed lease file until ``add_image`` references it, and the collector keeps
leased blobs (and blobs whose lock is held: being written, or waited on right now). A lease whose lock nobody holds
belonged to a dead process and is removed.

Damage (TESTPLAN 55): ``images()`` and ``get_image()`` raise :class:`StoreCorrupt` naming a damaged record file
(with ``path`` and, when the file name gives it, ``image_id`` fields); ``resolve()`` by id still finds it so that
``remove_image`` can drop it; ``prune()`` removes damaged records. While a damaged record exists the collector
deletes nothing (what the record needs is unknown), so damage never spreads to blob deletion.

Damaged blobs are named by :meth:`Store.damage`, which ``sbx images`` calls for every image, so it must stay cheap
and hash nothing (hashlib alone costs the listing milliseconds): it stats each blob (missing, or a layer whose size
is not the manifest's) and reports blobs found damaged when they were last verified. Those come from
``damaged/<algorithm>-<hex>`` notes that :meth:`check` and :meth:`read_blob` (every use of a config or manifest:
run, create, inspect, save) leave when a blob hashes wrong; a note holds the blob file's inode, size and mtime, so
it speaks only of the file it was written for (a blob pulled again after ``rmi -f`` is a new file and clears it).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path

from sandbox.errors import (
    AmbiguousImage,
    DigestMismatch,
    ImageNotFound,
    InvalidDigest,
    InvalidReference,
    SizeMismatch,
    StoreCorrupt,
    StoreError,
)
from sandbox.oci.digest import Digest
from sandbox.oci.reference import Reference
from sandbox.store.atomic import fsync_dir, store_error, write_all, write_atomic
from sandbox.store.images import ImageRecord
from sandbox.store.locks import FileLock, create_locked, try_lock_fd

_DIR_MODE = 0o700
_BLOB_MODE = 0o444
_READ_CHUNK = 1024 * 1024
_HEX = re.compile(r"[0-9a-f]+")
_DIGEST_TEXT = re.compile(rb"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})")
_ALGORITHMS = ("sha256", "sha512")


@dataclass(frozen=True)
class Problem:
    """One finding of :meth:`Store.check`: what is broken, and how."""

    item: str
    message: str

    def __str__(self) -> str:
        return f"{self.item}: {self.message}"


@dataclass(frozen=True)
class Usage:
    images: int  # image records (damaged ones included)
    active_images: int  # images among the ``in_use`` ids given to disk_usage (used by containers)
    blobs: int  # blob files
    total_bytes: int  # their total size on disk
    reclaimable_bytes: int  # bytes of blobs no image references (freed by collect_blobs / prune)


@dataclass(frozen=True)
class _Damaged:
    path: Path
    image_id: Digest | None
    error: StoreCorrupt


@dataclass(frozen=True)
class _Blob:
    digest: Digest
    path: Path
    size: int


class BlobIngest:
    """Writes one blob into a locked ``.partial`` file, hashing as it goes; :meth:`commit` makes it a blob.

    It satisfies the registry's BlobWriter protocol (``written``, ``write``, ``reset``, ``commit``). Writing more
    bytes than the expected size fails at once, so an endless body cannot fill the disk.
    """

    def __init__(self, store: Store, digest: Digest, size: int | None, fd: int, path: Path) -> None:
        self._store = store
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
        self._store._lease_add(self.digest)
        target = self._store.blob_path(self.digest)
        self._store._ensure_dir(target.parent)
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


class Store:
    BlobIngest = BlobIngest

    def __init__(self, root: Path, *, lock_timeout: float = 300.0) -> None:
        self.root = Path(root)
        self.lock_timeout = lock_timeout
        self.blobs_dir = self.root / "blobs"
        self.ingest_dir = self.root / "ingest"
        self.images_dir = self.root / "images"
        self.locks_dir = self.root / "locks"
        self.leases_dir = self.root / "leases"
        self._lease_mutex = threading.Lock()
        self._lease_fd: int | None = None
        self._lease_path: Path | None = None
        self._lease_pid = 0
        self._leased: set[Digest] = set()

    @classmethod
    def open(cls, root: Path, **kw: float) -> Store:
        """Create the layout (0700) if needed and collect what dead processes left in ingest/."""
        store = cls(root, **kw)
        store._prepare()
        store.collect_garbage_temp()
        return store

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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

    def __del__(self) -> None:
        with suppress(Exception):  # at interpreter shutdown there is nothing useful to do
            self.close()

    # --- layout --------------------------------------------------------------------------------------------------

    def _prepare(self) -> None:
        self._ensure_dir(self.root, parents=True)
        for directory in (
            self.blobs_dir,
            self.blobs_dir / "sha256",
            self.ingest_dir,
            self.images_dir,
            self.images_dir / "sha256",
            self.locks_dir,
            self.leases_dir,
        ):
            self._ensure_dir(directory)

    def _ensure_dir(self, directory: Path, *, parents: bool = False) -> None:
        try:
            with suppress(FileExistsError):
                os.makedirs(directory, _DIR_MODE) if parents else os.mkdir(directory, _DIR_MODE)
            info = os.stat(directory)
            if not stat.S_ISDIR(info.st_mode):
                raise StoreError(f"store path {directory} is not a directory", path=str(directory))
            if stat.S_IMODE(info.st_mode) != _DIR_MODE:
                os.chmod(directory, _DIR_MODE)  # an older or hand-made root may be readable by others
        except OSError as exc:
            raise store_error(exc, "create directory", directory) from exc

    def _store_lock(self) -> FileLock:
        return FileLock(self.locks_dir / "store.lock", self.lock_timeout)

    def _blob_lock(self, digest: Digest, timeout: float | None = None) -> FileLock:
        path = self.locks_dir / f"blob-{digest.algorithm}-{digest.hex}.lock"
        return FileLock(path, self.lock_timeout if timeout is None else timeout, remove=True)

    # --- blobs ---------------------------------------------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        return self.blobs_dir / digest.algorithm / digest.hex

    def has_blob(self, digest: Digest) -> bool:
        try:
            return stat.S_ISREG(os.stat(self.blob_path(digest)).st_mode)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise store_error(exc, "stat", self.blob_path(digest)) from exc

    def read_blob(self, digest: Digest, limit: int | None = None) -> bytes:
        """The blob's bytes, verified against its digest (StoreCorrupt if missing, damaged or over ``limit``)."""
        path = self.blob_path(digest)
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
            self._note_damage(digest, f"content is damaged: it hashes to {actual}")
            raise StoreCorrupt(
                f"blob {digest} is damaged: its content hashes to {actual}", path=str(path), digest=digest
            )
        return data

    def put_blob(self, data: bytes, digest: Digest | None = None) -> Digest:
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
        with self._blob_lock(digest):
            if self.has_blob(digest):
                self._lease_add(digest)
                yield None
                return
            fd, path = create_locked(self.ingest_dir, ".partial")
            writer = BlobIngest(self, digest, size, fd, path)
            try:
                yield writer
            finally:
                writer._discard()

    def _list_blobs(self) -> tuple[list[_Blob], list[Path]]:
        """Blob files (digest, path, size) and the paths under blobs/ that are not blob names."""
        blobs: list[_Blob] = []
        strays: list[Path] = []
        for algorithm_dir in _listdir(self.blobs_dir):
            directory = self.blobs_dir / algorithm_dir
            if algorithm_dir not in _ALGORITHMS:
                strays.append(directory)
                continue
            for name in _listdir(directory):
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
                blobs.append(_Blob(digest, path, info.st_size))
        return blobs, strays

    # --- leases: blobs written by this process that no record references yet ---------------------------------------

    def _lease_add(self, digest: Digest) -> None:
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

    def _lease_release(self, digests: Iterable[Digest]) -> None:
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

    def _leased_digests(self) -> set[Digest]:
        """Digests leased by live processes (this one included); removes the leases of dead ones."""
        with self._lease_mutex:
            leased = set(self._leased) if self._lease_pid == os.getpid() else set()
            own = self._lease_path
        for name in _listdir(self.leases_dir):
            path = self.leases_dir / name
            if path == own:
                continue
            raw = _read_if_locked(path)
            if raw is not None:
                leased.update(_digests_in(raw))
        return leased

    # --- garbage -------------------------------------------------------------------------------------------------

    def collect_garbage_temp(self) -> int:
        """Remove what dead processes left: unlocked ``.partial`` and lease files, record temp files."""
        removed = 0
        for directory in (self.ingest_dir, self.leases_dir):
            for name in _listdir(directory):
                if _remove_if_unlocked(directory / name):
                    removed += 1
        # Record temp files are written only under the store lock: if we can take it at once, none is live.
        lock = self._store_lock()
        if lock.acquire(blocking=False):
            try:
                for algorithm_dir in _listdir(self.images_dir):
                    directory = self.images_dir / algorithm_dir
                    if not directory.is_dir():
                        continue
                    for name in _listdir(directory):
                        if name.startswith(".") and name.endswith(".tmp"):
                            _unlink(directory / name)
                            removed += 1
            finally:
                lock.release()
        return removed

    def collect_blobs(self) -> list[Digest]:
        """Delete blobs no image record references (nor a live lease, nor a writer holding its lock)."""
        with self._store_lock():
            return self._collect_blobs_locked()[0]

    def discard_unreferenced(self, digests: Iterable[Digest]) -> list[Digest]:
        """Undo a failed pull: drop this process's lease on ``digests`` and delete those no image references
        (nor another live pull leases). Returns the deleted digests."""
        wanted = set(digests)
        with self._store_lock():
            self._lease_release(wanted)
            return self._collect_blobs_locked(only=wanted)[0]

    def _collect_blobs_locked(self, only: set[Digest] | None = None) -> tuple[list[Digest], int]:
        blobs, _ = self._list_blobs()  # the snapshot: a blob written after this is never considered
        if only is not None:
            blobs = [blob for blob in blobs if blob.digest in only]
        referenced = self._referenced_digests()
        if referenced is None:
            return [], 0
        held: list[tuple[_Blob, FileLock]] = []
        deleted: list[Digest] = []
        freed = 0
        try:
            for blob in blobs:
                if blob.digest in referenced:
                    continue
                lock = self._blob_lock(blob.digest, timeout=0)
                if lock.acquire(blocking=False):  # held by someone: being written or awaited, keep it
                    held.append((blob, lock))
            # Read leases only now: a writer adds its lease before it releases the blob's lock we now hold.
            leased = self._leased_digests()
            directories = set()
            for blob, _lock in held:
                if blob.digest in leased:
                    continue
                if _unlink(blob.path):
                    deleted.append(blob.digest)
                    freed += blob.size
                    directories.add(blob.path.parent)
            for directory in directories:
                fsync_dir(directory)
        finally:
            for _blob, lock in held:
                lock.release()
        return deleted, freed

    def _referenced_digests(self) -> set[Digest] | None:
        """Blobs the records need; None while a damaged record exists, as what it needs is unknown.

        Collecting nothing until the damaged record is removed (``remove_image``, ``prune``) keeps damage from
        spreading into deleted blobs.
        """
        records, damaged = self._scan_records()
        if damaged:
            return None
        referenced: set[Digest] = set()
        for record in records:
            referenced.update(record.blob_digests())
        return referenced

    # --- records -------------------------------------------------------------------------------------------------

    def _record_path(self, image_id: Digest) -> Path:
        return self.images_dir / image_id.algorithm / f"{image_id.hex}.json"

    def _scan_records(self) -> tuple[list[ImageRecord], list[_Damaged]]:
        records: list[ImageRecord] = []
        damaged: list[_Damaged] = []
        for algorithm_dir in _listdir(self.images_dir):
            directory = self.images_dir / algorithm_dir
            for name in _listdir(directory) if directory.is_dir() else ():
                if name.startswith("."):
                    continue  # an atomic write's temp file
                path = directory / name
                result = self._load_record_file(path, algorithm_dir, name)
                if isinstance(result, ImageRecord):
                    records.append(result)
                elif result is not None:
                    damaged.append(result)
        return records, damaged

    def _load_record_file(self, path: Path, algorithm: str, name: str) -> ImageRecord | _Damaged | None:
        """The record, or what is wrong with it; None when it vanished (removed by a parallel command)."""
        image_id = None
        if name.endswith(".json"):
            with suppress(InvalidDigest):
                image_id = Digest.parse(f"{algorithm}:{name.removesuffix('.json')}")
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raw = b""
        except OSError as exc:
            raise store_error(exc, "read", path) from exc
        if image_id is None:
            error = StoreCorrupt(f"unexpected file {path} among image records", path=str(path), image_id=None)
            return _Damaged(path, None, error)
        try:
            record = ImageRecord.from_bytes(raw, source=str(path))
            if record.id != image_id:
                raise StoreCorrupt(f"damaged image record {path}: it describes image {record.id}", path=str(path))
        except StoreCorrupt as exc:
            return _Damaged(path, image_id, StoreCorrupt(exc.message, path=str(path), image_id=image_id))
        return record

    def _read_record(self, image_id: Digest) -> ImageRecord:
        path = self._record_path(image_id)
        result = self._load_record_file(path, image_id.algorithm, path.name)
        if result is None:
            raise ImageNotFound(f"no such image: {image_id}", image_id=image_id)
        if isinstance(result, _Damaged):
            raise result.error
        return result

    def _write_record(self, record: ImageRecord) -> None:
        path = self._record_path(record.id)
        self._ensure_dir(path.parent)
        write_atomic(path, record.to_bytes())

    def _remove_record_file(self, path: Path) -> None:
        if _unlink(path):
            fsync_dir(path.parent)

    def images(self, *, strict: bool = True) -> list[ImageRecord]:
        """Every image, newest first; a damaged record raises StoreCorrupt naming its file (skipped if not strict)."""
        records, damaged = self._scan_records()
        if damaged and strict:
            raise damaged[0].error
        return sorted(records, key=lambda r: (-r.added, str(r.id)))

    def get_image(self, image_id: Digest) -> ImageRecord:
        return self._read_record(image_id)

    def resolve(self, ref_or_id: str) -> ImageRecord:
        """Find an image by full or short id (``sha256:`` optional), qualified tag, or ``name@digest``.

        A full id first, then names, then a unique id prefix (Docker's order). A damaged record found by id raises
        StoreCorrupt (with ``image_id``, so ``remove_image`` can drop it); damaged records never match a name.
        """
        text = ref_or_id
        records, damaged = self._scan_records()
        id_text = text
        for algorithm in _ALGORITHMS:
            if text.startswith(f"{algorithm}:"):
                id_text = text.removeprefix(f"{algorithm}:")
                algorithm_given: str | None = algorithm
                break
        else:
            algorithm_given = None
        is_hex = bool(id_text) and _HEX.fullmatch(id_text) is not None
        by_id: dict[str, ImageRecord | _Damaged] = {}
        for record in records:
            by_id[str(record.id)] = record
        for item in damaged:
            if item.image_id is not None:
                by_id.setdefault(str(item.image_id), item)

        def found(item: ImageRecord | _Damaged) -> ImageRecord:
            if isinstance(item, _Damaged):
                raise item.error
            return item

        if is_hex:
            for algorithm in (algorithm_given,) if algorithm_given else _ALGORITHMS:
                if f"{algorithm}:{id_text}" in by_id:
                    return found(by_id[f"{algorithm}:{id_text}"])
        if algorithm_given is None and text:
            named = self._match_name(text, records)
            if named is not None:
                return named
        if is_hex:
            prefix = f"{algorithm_given}:{id_text}" if algorithm_given else None
            matches = [
                key
                for key in by_id
                if (key.startswith(prefix) if prefix else key.partition(":")[2].startswith(id_text))
            ]
            if len(matches) == 1:
                return found(by_id[matches[0]])
            if len(matches) > 1:
                raise AmbiguousImage(
                    f"short id {text} matches {len(matches)} images",
                    hint="give more characters of the image id",
                    prefix=text,
                )
        raise ImageNotFound(f"no such image: {text}", hint="list local images with: sbx images", name=text)

    def _match_name(self, text: str, records: list[ImageRecord]) -> ImageRecord | None:
        candidates = [r for r in records if text in r.repo_tags or text in r.repo_digests]
        if not candidates:
            try:
                reference = Reference.parse(text)
            except InvalidReference:
                return None
            if reference.digest is not None:
                pinned = f"{reference.name}@{reference.digest}"
                candidates = [r for r in records if pinned in r.repo_digests]
                if not candidates:
                    candidates = [
                        r
                        for r in records
                        if reference.digest in (r.manifest_digest, r.index_digest) and reference.name in _names(r)
                    ]
            else:
                qualified = str(reference)
                candidates = [r for r in records if qualified in r.repo_tags]
        if not candidates:
            return None
        # One tag on two records only happens after a crash between two record writes: the newest holds it.
        return max(candidates, key=lambda r: (r.added, str(r.id)))

    def add_image(self, record: ImageRecord) -> ImageRecord:
        """Store ``record``, merged with an existing record of the same id; its tags move away from other images."""
        record = replace(
            record,
            repo_tags=_unique(_qualified_tag(tag) for tag in record.repo_tags),
            repo_digests=_unique(_qualified_digest(text) for text in record.repo_digests),
        )
        with self._store_lock():
            for digest in record.blob_digests():
                if not self.has_blob(digest):
                    # Never store a record that points at nothing (e.g. a parallel rmi collected a blob this pull
                    # found present without going through ingest()).
                    raise StoreCorrupt(
                        f"cannot add image {record.id}: its blob {digest} is missing from the store",
                        hint="pull the image again",
                        digest=digest,
                    )
            path = self._record_path(record.id)
            existing = self._load_record_file(path, record.id.algorithm, path.name)
            if isinstance(existing, ImageRecord):
                record = replace(
                    record,
                    repo_tags=_unique((*existing.repo_tags, *record.repo_tags)),
                    repo_digests=_unique((*existing.repo_digests, *record.repo_digests)),
                    added=min(existing.added, record.added),
                )
            self._move_tags_locked(record.id, record.repo_tags)
            self._write_record(record)
            self._lease_release(record.blob_digests())
        return record

    def _move_tags_locked(self, image_id: Digest, tags: Iterable[str]) -> None:
        """Take ``tags`` from every image but ``image_id`` (which keeps its other tags, or becomes dangling)."""
        moving = set(tags)
        if not moving:
            return
        records, _ = self._scan_records()
        for other in records:
            if other.id != image_id and moving.intersection(other.repo_tags):
                kept = tuple(tag for tag in other.repo_tags if tag not in moving)
                self._write_record(replace(other, repo_tags=kept))

    def tag(self, image_id: Digest, qualified_tag: str) -> None:
        """Point ``qualified_tag`` at the image, moving it from whichever image had it."""
        tag = _qualified_tag(qualified_tag)
        with self._store_lock():
            record = self._read_record(image_id)
            self._move_tags_locked(image_id, (tag,))
            if tag not in record.repo_tags:
                self._write_record(replace(record, repo_tags=(*record.repo_tags, tag)))

    def untag(self, qualified_tag: str) -> ImageRecord:
        """Remove a tag (or a ``name@digest`` repo digest); returns the updated record, maybe now dangling."""
        try:
            name = _qualified_digest(qualified_tag) if "@" in qualified_tag else _qualified_tag(qualified_tag)
        except InvalidReference:
            name = qualified_tag
        with self._store_lock():
            records, _ = self._scan_records()
            for record in sorted(records, key=lambda r: (-r.added, str(r.id))):
                if name in record.repo_tags or name in record.repo_digests:
                    updated = replace(
                        record,
                        repo_tags=tuple(t for t in record.repo_tags if t != name),
                        repo_digests=tuple(d for d in record.repo_digests if d != name),
                    )
                    self._write_record(updated)
                    return updated
        raise ImageNotFound(f"no such image: {qualified_tag}", name=qualified_tag)

    def remove_image(self, image_id: Digest) -> list[Digest]:
        """Remove the record (even a damaged one), then the blobs nothing references any more; returns those."""
        with self._store_lock():
            path = self._record_path(image_id)
            if not path.exists():
                raise ImageNotFound(f"no such image: {image_id}", image_id=image_id)
            self._remove_record_file(path)
            return self._collect_blobs_locked()[0]

    def prune(self, *, dangling_only: bool = True, keep: Iterable[Digest] = ()) -> tuple[list[Digest], int]:
        """Remove dangling images (all images if not ``dangling_only``; never those in ``keep``, e.g. used by
        containers) and damaged records, then unreferenced blobs. Returns the removed image ids and bytes freed."""
        keep = set(keep)
        removed: list[Digest] = []
        with self._store_lock():
            records, damaged = self._scan_records()
            for record in records:
                if record.id not in keep and (record.dangling or not dangling_only):
                    self._remove_record_file(self._record_path(record.id))
                    removed.append(record.id)
            for item in damaged:
                if item.image_id is None or item.image_id not in keep:
                    self._remove_record_file(item.path)
                    if item.image_id is not None:
                        removed.append(item.image_id)
            _, freed = self._collect_blobs_locked()
        return removed, freed

    # --- inspection ----------------------------------------------------------------------------------------------

    def check(self) -> list[Problem]:
        """Re-hash every blob, and find damaged records and records whose blobs are missing."""
        problems: list[Problem] = []
        records, damaged = self._scan_records()
        for item in damaged:
            problems.append(Problem(str(item.path), item.error.message))
        users: dict[Digest, list[str]] = {}
        for record in records:
            for digest in record.blob_digests():
                users.setdefault(digest, []).append(record.id.short)
        blobs, strays = self._list_blobs()
        for path in strays:
            problems.append(Problem(str(path), "unexpected file among blobs (not a blob name or not a regular file)"))
        present = set()
        for blob in blobs:
            try:
                actual = _hash_file(blob.path, blob.digest.algorithm)
            except FileNotFoundError:
                continue  # collected while we looked
            present.add(blob.digest)
            if actual != blob.digest:
                self._note_damage(blob.digest, f"content is damaged: it hashes to {actual}")
                used_by = users.get(blob.digest)
                suffix = f"; used by image {', '.join(used_by)}" if used_by else ""
                problems.append(Problem(f"blob {blob.digest}", f"content is damaged: it hashes to {actual}{suffix}"))
        for record in records:
            roles = [("config", record.id), ("manifest", record.manifest_digest)]
            if record.index_digest is not None:
                roles.append(("index", record.index_digest))
            roles.extend((f"layer {n}", layer.digest) for n, layer in enumerate(record.layers, 1))
            for role, digest in roles:
                if digest not in present and not self.has_blob(digest):
                    names = ", ".join(record.repo_tags) or "<none>"
                    problems.append(Problem(f"image {record.id.short} ({names})", f"{role} blob {digest} is missing"))
        return problems

    def damage(self, record: ImageRecord) -> list[str]:
        """What is wrong with the blobs ``record`` needs, found without hashing (see the module docstring)."""
        problems: list[str] = []
        notes = self._damage_notes()
        roles = [("config", record.id, None), ("manifest", record.manifest_digest, None)]
        if record.index_digest is not None:
            roles.append(("index", record.index_digest, None))
        roles.extend((f"layer {n}", layer.digest, layer.size) for n, layer in enumerate(record.layers, 1))
        for role, digest, size in roles:
            path = self.blob_path(digest)
            try:
                info = os.stat(path)
            except FileNotFoundError:
                problems.append(f"{role} blob {digest} is missing")
                continue
            except OSError as exc:
                raise store_error(exc, "stat", path) from exc
            note = notes.get(digest)
            if size is not None and info.st_size != size:
                problems.append(f"{role} blob {digest} is {info.st_size} bytes, not {size}")
            elif note is not None and note.get("file") == _file_identity(info):
                problems.append(f"{role} blob {digest}: {note.get('reason', 'content is damaged')}")
        return problems

    def _damage_notes(self) -> dict[Digest, dict]:
        notes: dict[Digest, dict] = {}
        directory = self.root / "damaged"
        for name in _listdir(directory):
            algorithm, _, hex_digest = name.partition("-")
            try:
                digest = Digest.parse(f"{algorithm}:{hex_digest}")
                note = json.loads((directory / name).read_bytes())
            except (InvalidDigest, OSError, ValueError):
                continue
            if isinstance(note, dict):
                notes[digest] = note
        return notes

    def _note_damage(self, digest: Digest, reason: str) -> None:
        """Remember that the blob file now at ``digest``'s path hashes wrong (best effort: a note, not a record)."""
        with suppress(OSError):
            info = os.stat(self.blob_path(digest))
            directory = self.root / "damaged"
            directory.mkdir(mode=0o700, exist_ok=True)
            note = {"file": _file_identity(info), "reason": reason}
            write_atomic(directory / f"{digest.algorithm}-{digest.hex}", json.dumps(note).encode())

    def disk_usage(self, *, in_use: Iterable[Digest] = ()) -> Usage:
        """Counts and bytes; ``in_use`` (image ids that containers use) only feeds ``active_images``."""
        blobs, _ = self._list_blobs()
        records, damaged = self._scan_records()
        referenced = self._referenced_digests()
        unreferenced = [] if referenced is None else [blob for blob in blobs if blob.digest not in referenced]
        in_use = set(in_use)
        return Usage(
            images=len(records) + len(damaged),
            active_images=sum(1 for record in records if record.id in in_use),
            blobs=len(blobs),
            total_bytes=sum(blob.size for blob in blobs),
            reclaimable_bytes=sum(blob.size for blob in unreferenced),
        )


# --- helpers ---------------------------------------------------------------------------------------------------------


def _listdir(directory: Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise store_error(exc, "list", directory) from exc


def _unlink(path: Path) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        return False
    except OSError as exc:
        raise store_error(exc, "remove", path) from exc
    return True


def _open_for_lock(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            return None
        raise store_error(exc, "open", path) from exc


def _remove_if_unlocked(path: Path) -> bool:
    """Remove a temp file whose writer is gone (nobody holds its flock); keep it while its writer lives."""
    fd = _open_for_lock(path)
    if fd is None:
        return False
    try:
        if not try_lock_fd(fd):
            return False
        return _unlink(path)  # under the lock: the writer's create_locked notices if it raced us
    finally:
        os.close(fd)


def _read_if_locked(path: Path) -> bytes | None:
    """A lease's content if its process is alive (holds the flock); a dead process's lease is removed."""
    fd = _open_for_lock(path)
    if fd is None:
        return None
    try:
        if try_lock_fd(fd):
            _unlink(path)
            return None
        chunks = []
        while chunk := os.read(fd, _READ_CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise store_error(exc, "read", path) from exc
    finally:
        os.close(fd)


def _digests_in(raw: bytes) -> set[Digest]:
    found = set()
    for match in _DIGEST_TEXT.finditer(raw):
        found.add(Digest.parse(match.group(0).decode()))
    return found


def _file_identity(info: os.stat_result) -> list[int]:
    """Which file this is, as far as a damage note cares: replaced or rewritten files differ."""
    return [info.st_ino, info.st_size, info.st_mtime_ns]


def _hash_file(path: Path, algorithm: str) -> Digest:
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


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _qualified_tag(text: str) -> str:
    reference = Reference.parse(text)
    if reference.digest is not None or reference.tag is None:
        raise InvalidReference(f"invalid tag {text!r}: expected NAME:TAG without a digest")
    return str(reference)


def _qualified_digest(text: str) -> str:
    reference = Reference.parse(text, default_tag=False)
    if reference.digest is None:
        raise InvalidReference(f"invalid repo digest {text!r}: expected NAME@DIGEST")
    return f"{reference.name}@{reference.digest}"


def _names(record: ImageRecord) -> set[str]:
    names = {tag.rpartition(":")[0] for tag in record.repo_tags}
    names.update(text.partition("@")[0] for text in record.repo_digests)
    return names
