"""The local store: blobs (:mod:`sandbox.store.blobs`) and image records (:mod:`sandbox.store.records`) kept
consistent with each other: tags that move, garbage collection, checks.

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

import os
from collections.abc import Iterable
from contextlib import AbstractContextManager, suppress
from pathlib import Path

from sandbox.errors import ImageNotFound, InvalidReference, StoreCorrupt
from sandbox.oci.digest import Digest
from sandbox.store.atomic import ensure_private_dir, fsync_dir, listdir, store_error, unlink
from sandbox.store.blobs import Blob, BlobIngest, BlobStore, file_identity
from sandbox.store.images import ImageRecord
from sandbox.store.locks import FileLock, remove_if_unlocked
from sandbox.store.records import ImageRecords, normal_repo_digest, normal_tag, unique
from sandbox.valueclass import replace, valueclass


@valueclass
class Problem:
    """One finding of :meth:`Store.check`: what is broken, and how."""

    item: str
    message: str

    def __str__(self) -> str:
        return f"{self.item}: {self.message}"


@valueclass
class Usage:
    images: int  # image records (damaged ones included)
    active_images: int  # images among the ``in_use`` ids given to disk_usage (used by containers)
    blobs: int  # blob files
    total_bytes: int  # their total size on disk
    reclaimable_bytes: int  # bytes of blobs no image references (freed by collect_blobs / prune)


class Store:
    BlobIngest = BlobIngest

    def __init__(self, root: Path, *, lock_timeout: float = 300.0) -> None:
        self.root = Path(root)
        self.lock_timeout = lock_timeout
        self.locks_dir = self.root / "locks"
        self.images_dir = self.root / "images"
        self.blobs = BlobStore(self.root, self.locks_dir, lock_timeout)
        self.records = ImageRecords(self.images_dir)
        self.blobs_dir = self.blobs.blobs_dir
        self.ingest_dir = self.blobs.ingest_dir
        self.leases_dir = self.blobs.leases_dir

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
        self.blobs.close()

    def __del__(self) -> None:
        with suppress(Exception):  # at interpreter shutdown there is nothing useful to do
            self.close()

    # --- layout --------------------------------------------------------------------------------------------------

    def _prepare(self) -> None:
        ensure_private_dir(self.root, parents=True)
        for directory in (
            self.blobs_dir,
            self.blobs_dir / "sha256",
            self.ingest_dir,
            self.images_dir,
            self.images_dir / "sha256",
            self.locks_dir,
            self.leases_dir,
        ):
            ensure_private_dir(directory)

    def _store_lock(self) -> FileLock:
        return FileLock(self.locks_dir / "store.lock", self.lock_timeout)

    def _blob_lock(self, digest: Digest, timeout: float | None = None) -> FileLock:
        return self.blobs.lock(digest, timeout)

    # --- blobs ---------------------------------------------------------------------------------------------------

    def blob_path(self, digest: Digest) -> Path:
        return self.blobs.path(digest)

    def has_blob(self, digest: Digest) -> bool:
        return self.blobs.has(digest)

    def read_blob(self, digest: Digest, limit: int | None = None) -> bytes:
        """The blob's bytes, verified against its digest (StoreCorrupt if missing, damaged or over ``limit``)."""
        return self.blobs.read(digest, limit)

    def put_blob(self, data: bytes, digest: Digest | None = None) -> Digest:
        """Store ``data`` (verified against ``digest`` when given); storing a present blob is a no-op."""
        return self.blobs.put(data, digest)

    def ingest(self, digest: Digest, size: int | None) -> AbstractContextManager[BlobIngest | None]:
        """Write one blob (see :meth:`BlobStore.ingest`): None when it is already present, else a writer."""
        return self.blobs.ingest(digest, size)

    # --- garbage -------------------------------------------------------------------------------------------------

    def collect_garbage_temp(self) -> int:
        """Remove what dead processes left: unlocked ``.partial`` and lease files, record temp files."""
        removed = 0
        for directory in (self.ingest_dir, self.leases_dir):
            for name in listdir(directory):
                if remove_if_unlocked(directory / name):
                    removed += 1
        # Record temp files are written only under the store lock: if we can take it at once, none is live.
        lock = self._store_lock()
        if lock.acquire(blocking=False):
            try:
                for algorithm_dir in listdir(self.images_dir):
                    directory = self.images_dir / algorithm_dir
                    if not directory.is_dir():
                        continue
                    for name in listdir(directory):
                        if name.startswith(".") and name.endswith(".tmp"):
                            unlink(directory / name)
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
            self.blobs.lease_release(wanted)
            return self._collect_blobs_locked(only=wanted)[0]

    def _collect_blobs_locked(self, only: set[Digest] | None = None) -> tuple[list[Digest], int]:
        blobs, _ = self.blobs.scan()  # the snapshot: a blob written after this is never considered
        if only is not None:
            blobs = [blob for blob in blobs if blob.digest in only]
        referenced = self._referenced_digests()
        if referenced is None:
            return [], 0
        held: list[tuple[Blob, FileLock]] = []
        deleted: list[Digest] = []
        freed = 0
        try:
            for blob in blobs:
                if blob.digest in referenced:
                    continue
                lock = self.blobs.lock(blob.digest, timeout=0)
                if lock.acquire(blocking=False):  # held by someone: being written or awaited, keep it
                    held.append((blob, lock))
            # Read leases only now: a writer adds its lease before it releases the blob's lock we now hold.
            leased = self.blobs.leased_digests()
            directories = set()
            for blob, _lock in held:
                if blob.digest in leased:
                    continue
                if unlink(blob.path):
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
        records, damaged = self.records.scan()
        if damaged:
            return None
        referenced: set[Digest] = set()
        for record in records:
            referenced.update(record.blob_digests())
        return referenced

    # --- records -------------------------------------------------------------------------------------------------

    def images(self, *, strict: bool = True) -> list[ImageRecord]:
        """Every image, newest first; a damaged record raises StoreCorrupt naming its file (skipped if not strict)."""
        records, damaged = self.records.scan()
        if damaged and strict:
            raise damaged[0].error
        return sorted(records, key=lambda r: (-r.added, str(r.id)))

    def get_image(self, image_id: Digest) -> ImageRecord:
        return self.records.read(image_id)

    def resolve(self, ref_or_id: str) -> ImageRecord:
        """Find an image by full or short id, qualified tag, or ``name@digest`` (:meth:`ImageRecords.resolve`)."""
        return self.records.resolve(ref_or_id)

    def add_image(self, record: ImageRecord) -> ImageRecord:
        """Store ``record``, merged with an existing record of the same id; its tags move away from other images."""
        record = replace(
            record,
            repo_tags=unique(normal_tag(tag) for tag in record.repo_tags),
            repo_digests=unique(normal_repo_digest(text) for text in record.repo_digests),
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
            path = self.records.path(record.id)
            existing = self.records.load_file(path, record.id.algorithm, path.name)
            if isinstance(existing, ImageRecord):
                record = replace(
                    record,
                    repo_tags=unique((*existing.repo_tags, *record.repo_tags)),
                    repo_digests=unique((*existing.repo_digests, *record.repo_digests)),
                    added=min(existing.added, record.added),
                )
            self._move_tags_locked(record.id, record.repo_tags)
            self.records.write(record)
            self.blobs.lease_release(record.blob_digests())
        return record

    def _move_tags_locked(self, image_id: Digest, tags: Iterable[str]) -> None:
        """Take ``tags`` from every image but ``image_id`` (which keeps its other tags, or becomes dangling)."""
        moving = set(tags)
        if not moving:
            return
        records, _ = self.records.scan()
        for other in records:
            if other.id != image_id and moving.intersection(other.repo_tags):
                kept = tuple(tag for tag in other.repo_tags if tag not in moving)
                self.records.write(replace(other, repo_tags=kept))

    def tag(self, image_id: Digest, qualified_tag: str) -> None:
        """Point ``qualified_tag`` at the image, moving it from whichever image had it."""
        tag = normal_tag(qualified_tag)
        with self._store_lock():
            record = self.records.read(image_id)
            self._move_tags_locked(image_id, (tag,))
            if tag not in record.repo_tags:
                self.records.write(replace(record, repo_tags=(*record.repo_tags, tag)))

    def untag(self, qualified_tag: str) -> ImageRecord:
        """Remove a tag (or a ``name@digest`` repo digest); returns the updated record, maybe now dangling."""
        try:
            name = normal_repo_digest(qualified_tag) if "@" in qualified_tag else normal_tag(qualified_tag)
        except InvalidReference:
            name = qualified_tag
        with self._store_lock():
            records, _ = self.records.scan()
            for record in sorted(records, key=lambda r: (-r.added, str(r.id))):
                if name in record.repo_tags or name in record.repo_digests:
                    updated = replace(
                        record,
                        repo_tags=tuple(t for t in record.repo_tags if t != name),
                        repo_digests=tuple(d for d in record.repo_digests if d != name),
                    )
                    self.records.write(updated)
                    return updated
        raise ImageNotFound(f"no such image: {qualified_tag}", name=qualified_tag)

    def remove_image(self, image_id: Digest) -> list[Digest]:
        """Remove the record (even a damaged one), then the blobs nothing references any more; returns those."""
        with self._store_lock():
            path = self.records.path(image_id)
            if not path.exists():
                raise ImageNotFound(f"no such image: {image_id}", image_id=image_id)
            self.records.remove_file(path)
            return self._collect_blobs_locked()[0]

    def prune(self, *, dangling_only: bool = True, keep: Iterable[Digest] = ()) -> tuple[list[Digest], int]:
        """Remove dangling images (all images if not ``dangling_only``; never those in ``keep``, e.g. used by
        containers) and damaged records, then unreferenced blobs. Returns the removed image ids and bytes freed."""
        keep = set(keep)
        removed: list[Digest] = []
        with self._store_lock():
            records, damaged = self.records.scan()
            for record in records:
                if record.id not in keep and (record.dangling or not dangling_only):
                    self.records.remove_file(self.records.path(record.id))
                    removed.append(record.id)
            for item in damaged:
                if item.image_id is None or item.image_id not in keep:
                    self.records.remove_file(item.path)
                    if item.image_id is not None:
                        removed.append(item.image_id)
            _, freed = self._collect_blobs_locked()
        return removed, freed

    # --- inspection ----------------------------------------------------------------------------------------------

    def check(self) -> list[Problem]:
        """Re-hash every blob, and find damaged records and records whose blobs are missing."""
        problems: list[Problem] = []
        records, damaged = self.records.scan()
        for item in damaged:
            problems.append(Problem(str(item.path), item.error.message))
        users: dict[Digest, list[str]] = {}
        for record in records:
            for digest in record.blob_digests():
                users.setdefault(digest, []).append(record.id.short)
        blobs, strays = self.blobs.scan()
        for path in strays:
            problems.append(Problem(str(path), "unexpected file among blobs (not a blob name or not a regular file)"))
        present = set()
        for blob in blobs:
            try:
                actual = self.blobs.verify(blob)
            except FileNotFoundError:
                continue  # collected while we looked
            present.add(blob.digest)
            if actual != blob.digest:
                self.blobs.note_damage(blob.digest, f"content is damaged: it hashes to {actual}")
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
        notes = self.blobs.damage_notes()
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
            elif note is not None and note.get("file") == file_identity(info):
                problems.append(f"{role} blob {digest}: {note.get('reason', 'content is damaged')}")
        return problems

    def disk_usage(self, *, in_use: Iterable[Digest] = ()) -> Usage:
        """Counts and bytes; ``in_use`` (image ids that containers use) only feeds ``active_images``."""
        blobs, _ = self.blobs.scan()
        records, damaged = self.records.scan()
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
