"""The store's image records: one JSON file per image, named by its id (the config digest); tags live in them.

Layout under the store root::

    images/sha256/<hex>.json one record per image

Records are read and scanned here, written atomically, and found by id, short id, tag or ``name@digest``
(:meth:`ImageRecords.resolve`). A record that does not parse, or whose content names another image, is
:class:`Damaged`: :class:`StoreCorrupt` naming its file (with ``path`` and, when the file name gives it,
``image_id``), so ``rmi`` can still drop it. Changing records under the store lock is
:class:`~sandbox.store.store.Store`'s.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path

from sandbox.errors import AmbiguousImage, ImageNotFound, InvalidDigest, InvalidReference, StoreCorrupt
from sandbox.oci.digest import Digest
from sandbox.oci.reference import Reference
from sandbox.store.atomic import ensure_private_dir, fsync_dir, listdir, store_error, unlink, write_atomic
from sandbox.store.blobs import ALGORITHMS
from sandbox.store.images import ImageRecord
from sandbox.valueclass import valueclass

_HEX = re.compile(r"[0-9a-f]+")


@valueclass
class Damaged:
    path: Path
    image_id: Digest | None
    error: StoreCorrupt


class ImageRecords:
    """The image records under ``images/``; reading needs no lock, writers hold the store lock (:class:`Store`)."""

    def __init__(self, images_dir: Path) -> None:
        self.images_dir = images_dir

    def path(self, image_id: Digest) -> Path:
        return self.images_dir / image_id.algorithm / f"{image_id.hex}.json"

    def scan(self) -> tuple[list[ImageRecord], list[Damaged]]:
        records: list[ImageRecord] = []
        damaged: list[Damaged] = []
        for algorithm_dir in listdir(self.images_dir):
            directory = self.images_dir / algorithm_dir
            for name in listdir(directory) if directory.is_dir() else ():
                if name.startswith("."):
                    continue  # an atomic write's temp file
                path = directory / name
                result = self.load_file(path, algorithm_dir, name)
                if isinstance(result, ImageRecord):
                    records.append(result)
                elif result is not None:
                    damaged.append(result)
        return records, damaged

    def load_file(self, path: Path, algorithm: str, name: str) -> ImageRecord | Damaged | None:
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
            return Damaged(path, None, error)
        try:
            record = ImageRecord.from_bytes(raw, source=str(path))
            if record.id != image_id:
                raise StoreCorrupt(f"damaged image record {path}: it describes image {record.id}", path=str(path))
        except StoreCorrupt as exc:
            return Damaged(path, image_id, StoreCorrupt(exc.message, path=str(path), image_id=image_id))
        return record

    def read(self, image_id: Digest) -> ImageRecord:
        path = self.path(image_id)
        result = self.load_file(path, image_id.algorithm, path.name)
        if result is None:
            raise ImageNotFound(f"no such image: {image_id}", image_id=image_id)
        if isinstance(result, Damaged):
            raise result.error
        return result

    def write(self, record: ImageRecord) -> None:
        path = self.path(record.id)
        ensure_private_dir(path.parent)
        write_atomic(path, record.to_bytes())

    def remove_file(self, path: Path) -> None:
        if unlink(path):
            fsync_dir(path.parent)

    def resolve(self, ref_or_id: str) -> ImageRecord:
        """Find an image by full or short id (``sha256:`` optional), qualified tag, or ``name@digest``.

        A full id first, then names, then a unique id prefix (Docker's order). A damaged record found by id raises
        StoreCorrupt (with ``image_id``, so ``remove_image`` can drop it); damaged records never match a name.
        """
        text = ref_or_id
        records, damaged = self.scan()
        id_text = text
        for algorithm in ALGORITHMS:
            if text.startswith(f"{algorithm}:"):
                id_text = text.removeprefix(f"{algorithm}:")
                algorithm_given: str | None = algorithm
                break
        else:
            algorithm_given = None
        is_hex = bool(id_text) and _HEX.fullmatch(id_text) is not None
        by_id: dict[str, ImageRecord | Damaged] = {}
        for record in records:
            by_id[str(record.id)] = record
        for item in damaged:
            if item.image_id is not None:
                by_id.setdefault(str(item.image_id), item)

        def found(item: ImageRecord | Damaged) -> ImageRecord:
            if isinstance(item, Damaged):
                raise item.error
            return item

        if is_hex:
            for algorithm in (algorithm_given,) if algorithm_given else ALGORITHMS:
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


def unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def normal_tag(text: str) -> str:
    reference = Reference.parse(text)
    if reference.digest is not None or reference.tag is None:
        raise InvalidReference(f"invalid tag {text!r}: expected NAME:TAG without a digest")
    return str(reference)


def normal_repo_digest(text: str) -> str:
    reference = Reference.parse(text, default_tag=False)
    if reference.digest is None:
        raise InvalidReference(f"invalid repo digest {text!r}: expected NAME@DIGEST")
    return f"{reference.name}@{reference.digest}"


def _names(record: ImageRecord) -> set[str]:
    names = {tag.rpartition(":")[0] for tag in record.repo_tags}
    names.update(text.partition("@")[0] for text in record.repo_digests)
    return names
