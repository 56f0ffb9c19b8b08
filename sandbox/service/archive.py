"""Image archives: `save` (docker-archive / oci-archive), `load` (both, from Docker, skopeo or sbx) and `import`.

An archive is hostile input, checked as a pulled image is (TESTPLAN A and B): :mod:`sandbox.service.imagearchive`
reads the tar (member names, links), :mod:`sandbox.service.archiveverifier` checks every document and blob, and
everything is verified before anything is stored; blobs then go through :meth:`Store.ingest` and the records
through :meth:`Store.add_image` (so tags move as with pull). If storing fails, the blobs this load committed are
discarded again.

`save` writes the layers as stored (usually gzip-compressed) under ``blobs/sha256/<hex>``, as Docker 25+ lays out
its archives: the docker-archive holds ``manifest.json`` plus a complete OCI layout (``oci-layout``,
``index.json``), the oci-archive only the OCI layout. Docker and skopeo decompress such layers when they load them.
The output file is written under a temporary name and renamed into place, so a failure leaves nothing behind.

`import` turns a rootfs tar (plain, gzip or zstd) into a one-layer image (:mod:`sandbox.service.rootfsimport`); its
``--change`` instructions are :mod:`sandbox.oci.changes`'.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from sandbox.errors import InvalidArchive, InvalidReference, StoreCorrupt
from sandbox.oci import mediatypes as mt
from sandbox.oci.changes import apply_changes
from sandbox.oci.digest import Digest
from sandbox.oci.manifest import MAX_MANIFEST_BYTES, Platform
from sandbox.oci.reference import Reference
from sandbox.service.archiveverifier import (
    CONTAINERD_NAME,
    REF_NAME,
    ArchiveImage,
    ArchiveLayer,
    as_oci_manifest,
    manifest_bytes,
    parse_config,
    verify,
)
from sandbox.service.imagearchive import CHUNK, ImageArchive
from sandbox.service.images import named_tag
from sandbox.service.rootfsimport import rootfs_layer
from sandbox.valueclass import valueclass

if TYPE_CHECKING:
    from sandbox.service.images import ImageService
    from sandbox.store.images import ImageRecord
    from sandbox.store.store import Store

FORMATS = ("docker-archive", "oci-archive")


@valueclass
class Loaded:
    record: ImageRecord
    tags: tuple[str, ...]  # qualified tags this load gave the image

    @property
    def familiar_tags(self) -> tuple[str, ...]:
        return tuple(Reference.parse(tag).familiar for tag in self.tags)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class ArchiveService:
    def __init__(self, images: ImageService) -> None:
        self.images = images

    @property
    def store(self) -> Store:
        return self.images.store

    # save

    def save(self, names: Iterable[str], output: Path | BinaryIO, *, fmt: str = "docker-archive") -> None:
        """Write the named images as one archive to a path (atomically) or to a binary stream."""
        if fmt not in FORMATS:
            raise InvalidArchive(f"unsupported archive format {fmt!r}", hint="use docker-archive or oci-archive")
        selected = self._select(names)
        if not isinstance(output, Path):
            self._write(selected, output, fmt)
            return
        directory = output.parent
        fd, temp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".sbx-partial", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                self._write(selected, handle, fmt)
                handle.flush()
                os.fsync(handle.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temp, 0o666 & ~umask)
            os.replace(temp, output)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def _select(self, names: Iterable[str]) -> list[tuple[ImageRecord, list[str]]]:
        selected: dict[Digest, tuple[ImageRecord, list[str]]] = {}
        names = list(names)
        if not names:
            raise InvalidArchive("save needs at least one image")
        for name in names:
            record = self.images.resolve(name)
            _, tags = selected.setdefault(record.id, (record, []))
            tag = named_tag(name, record)
            if tag and tag not in tags:
                tags.append(tag)
        return list(selected.values())

    def _write(self, selected: list[tuple[ImageRecord, list[str]]], handle: BinaryIO, fmt: str) -> None:
        store = self.store
        with tarfile.open(fileobj=handle, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for directory in ("blobs", "blobs/sha256"):
                info = tarfile.TarInfo(directory)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            written: set[Digest] = set()
            index_entries, docker_entries = [], []
            for record, tags in selected:
                manifest_raw = store.read_blob(record.manifest_digest, MAX_MANIFEST_BYTES)
                manifest_type = record.manifest_media_type
                if fmt == "oci-archive" and manifest_type != mt.OCI_MANIFEST:
                    # an OCI layout lists OCI manifests only (skopeo skips others); the config bytes stay the same
                    manifest_raw, manifest_type = as_oci_manifest(manifest_raw), mt.OCI_MANIFEST
                manifest_digest = Digest.of(manifest_raw)
                for digest in (*(layer.digest for layer in record.layers), record.id):
                    if digest in written:
                        continue
                    written.add(digest)
                    if not store.has_blob(digest):
                        raise StoreCorrupt(f"blob {digest} of image {record.id.short} is missing from the store")
                    with open(store.blob_path(digest), "rb") as blob:
                        info = tarfile.TarInfo(f"blobs/{digest.algorithm}/{digest.hex}")
                        info.size, info.mode = os.fstat(blob.fileno()).st_size, 0o644
                        tar.addfile(info, blob)
                if manifest_digest not in written:
                    written.add(manifest_digest)
                    info = tarfile.TarInfo(f"blobs/{manifest_digest.algorithm}/{manifest_digest.hex}")
                    info.size, info.mode = len(manifest_raw), 0o644
                    tar.addfile(info, _BytesReader(manifest_raw))
                descriptor = {"mediaType": manifest_type, "digest": str(manifest_digest), "size": len(manifest_raw)}
                for tag in tags or [None]:
                    entry = dict(descriptor)
                    if tag is not None:
                        entry["annotations"] = {CONTAINERD_NAME: tag, REF_NAME: tag.rpartition(":")[2]}
                    index_entries.append(entry)
                docker_entries.append(
                    {
                        "Config": f"blobs/{record.id.algorithm}/{record.id.hex}",
                        "RepoTags": [Reference.parse(tag).familiar for tag in tags] or None,
                        "Layers": [f"blobs/{layer.digest.algorithm}/{layer.digest.hex}" for layer in record.layers],
                    }
                )
            documents = {
                "oci-layout": {"imageLayoutVersion": "1.0.0"},
                "index.json": {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": index_entries},
            }
            if fmt == "docker-archive":
                documents["manifest.json"] = docker_entries
            for name, document in documents.items():
                data = json.dumps(document).encode()
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, _BytesReader(data))

    # load

    def load(self, source: Path | BinaryIO, *, label: str | None = None) -> list[Loaded]:
        """Verify every image of an archive, then store them; a failure leaves nothing new in the store."""
        if isinstance(source, Path):
            with ImageArchive(source, label=label) as archive:
                return self._load(archive)
        with tempfile.TemporaryDirectory(prefix="sbx-load-") as tmp:
            spooled = Path(tmp) / "archive.tar"
            with open(spooled, "wb") as handle:
                shutil.copyfileobj(source, handle, CHUNK)
            with ImageArchive(spooled, label=label or "stdin") as archive:
                return self._load(archive)

    def _load(self, archive: ImageArchive) -> list[Loaded]:
        images = verify(archive)
        store = self.store
        committed: list[Digest] = []
        try:
            for image in images:
                for layer in image.layers:
                    self._ingest_member(archive, layer, committed)
                self._put(image, committed)
            results = []
            for image in images:
                record = self._record(image, image.tags)
                results.append(Loaded(self._add_unpacked(record), tuple(image.tags)))
            return results
        except BaseException:
            if committed:
                store.discard_unreferenced(committed)
            raise

    def _ingest_member(self, archive: ImageArchive, layer: ArchiveLayer, committed: list[Digest]) -> None:
        with self.store.ingest(layer.digest, layer.size) as writer:
            if writer is None:
                return
            for chunk in archive.chunks(layer.member):
                writer.write(chunk)
            writer.commit()  # checks size and digest again: the bytes are those that were verified
            committed.append(layer.digest)

    def _put(self, image: ArchiveImage, committed: list[Digest]) -> None:
        for raw, digest in ((image.config_raw, image.config_digest), (image.manifest_raw, image.manifest_digest)):
            if not self.store.has_blob(digest):
                committed.append(digest)
            self.store.put_blob(raw, digest)

    def _add_unpacked(self, record: ImageRecord) -> ImageRecord:
        """Unpack the layers (as pull does, so `run` only mounts), then record the image under their locks."""
        from sandbox.oci.manifest import Descriptor

        layers = [Descriptor(layer.media_type, layer.digest, layer.size) for layer in record.layers]
        with self.images.unpacker().unpacked(layers, [layer.diff_id for layer in record.layers]):
            return self.store.add_image(record)

    def _record(self, image: ArchiveImage, tags: Iterable[str]) -> ImageRecord:
        from sandbox.store.images import ImageRecord, LayerRecord

        config = image.config
        return ImageRecord(
            id=image.config_digest,
            manifest_digest=image.manifest_digest,
            manifest_media_type=image.manifest_media_type,
            config_media_type=image.config_media_type,
            layers=tuple(LayerRecord(item.digest, item.media_type, item.size, item.diff_id) for item in image.layers),
            repo_tags=tuple(tags),
            repo_digests=(),
            created=config.created,
            added=time.time(),
            platform=str(Platform(config.os or "linux", config.architecture, config.variant)),
            size=sum(layer.size for layer in image.layers) + len(image.config_raw),
        )

    # import

    def import_rootfs(
        self,
        source: Path | BinaryIO,
        reference: str | None = None,
        *,
        changes: Iterable[str] = (),
        message: str | None = None,
        platform: str | None = None,
        label: str = "-",
    ) -> ImageRecord:
        """A rootfs tar (plain, gzip or zstd) becomes a one-layer image (stored gzip-compressed)."""
        tag = None
        if reference:
            ref = Reference.parse(reference)
            if ref.digest is not None:
                raise InvalidReference("cannot import to a digest reference", hint="use REPOSITORY[:TAG]")
            tag = f"{ref.name}:{ref.tag}"
        container_config = apply_changes({}, changes)
        target = Platform.parse(platform) if platform else Platform.host()
        with tempfile.TemporaryDirectory(prefix="sbx-import-") as tmp:
            if isinstance(source, Path):
                path = source
            else:
                path = Path(tmp) / "input"
                with open(path, "wb") as handle:
                    shutil.copyfileobj(source, handle, CHUNK)
            blob_path, digest, size, diff_id = rootfs_layer(path, Path(tmp), label)
            config = {
                "architecture": target.architecture,
                "os": target.os,
                "created": _now(),
                "config": container_config,
                "rootfs": {"type": "layers", "diff_ids": [str(diff_id)]},
                "history": [{"created": _now(), "comment": message or f"Imported from {label}"}],
            }
            if target.variant:
                config["variant"] = target.variant
            config_raw = json.dumps(config).encode()
            image = ArchiveImage(
                config_raw, Digest.of(config_raw), mt.DOCKER_CONFIG, parse_config(config_raw), b"", Digest.of(b""),
                mt.DOCKER_MANIFEST, [ArchiveLayer(None, digest, size, mt.DOCKER_LAYER_GZIP, diff_id)],  # type: ignore[arg-type]
            )
            image.manifest_raw = manifest_bytes(
                mt.DOCKER_MANIFEST, mt.DOCKER_CONFIG, image.config_digest, len(config_raw), image.layers
            )
            image.manifest_digest = Digest.of(image.manifest_raw)
            store = self.store
            committed: list[Digest] = []
            try:
                with store.ingest(digest, size) as writer:
                    if writer is not None:
                        with open(blob_path, "rb") as blob:
                            while chunk := blob.read(CHUNK):
                                writer.write(chunk)
                        writer.commit()
                        committed.append(digest)
                self._put(image, committed)
                return self._add_unpacked(self._record(image, (tag,) if tag else ()))
            except BaseException:
                if committed:
                    store.discard_unreferenced(committed)
                raise


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = len(self._data)
        chunk, self._data = self._data[:size], self._data[size:]
        return bytes(chunk)
