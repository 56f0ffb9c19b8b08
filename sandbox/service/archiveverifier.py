"""What a `load` verifies: the images of an image archive (docker-archive or oci-archive), read and checked.

An archive is hostile input, checked as a pulled image is (TESTPLAN A and B): JSON documents (``manifest.json``,
``index.json``, manifests, configs) are bounded to 4 MiB and parsed strictly; every blob is hashed: a
``blobs/sha256/<hex>`` file must hash to its name, an OCI blob to its descriptor (digest and size), and every
layer's uncompressed stream to the config's diff_id (:class:`DiffIDHasher`). Nothing is stored here: the caller
stores what :func:`verify` returns. A docker-archive image (which has no manifest) gets one synthesised.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import Iterator

from sandbox.errors import (
    DiffIDMismatch,
    DigestMismatch,
    InvalidArchive,
    InvalidDigest,
    InvalidLayer,
    InvalidManifest,
    InvalidReference,
    SbxError,
    SizeMismatch,
)
from sandbox.oci import mediatypes as mt
from sandbox.oci.decompress import sniff
from sandbox.oci.digest import Digest
from sandbox.oci.imageconfig import ImageConfig
from sandbox.oci.layerdigest import DiffIDHasher
from sandbox.oci.manifest import MAX_LAYERS, MAX_MANIFEST_BYTES, Index, Manifest, Platform, load_json, parse_document
from sandbox.oci.reference import Reference
from sandbox.service.imagearchive import ImageArchive, member_name
from sandbox.valueclass import field, valueclass

MAX_IMAGES = 1000
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"

_BLOB_PATH = re.compile(r"blobs/(sha256|sha512)/([0-9a-f]+)")
_HEX_JSON = re.compile(r"([0-9a-f]{64})\.json")


@valueclass(frozen=False)
class ArchiveLayer:
    member: tarfile.TarInfo
    digest: Digest
    size: int
    media_type: str
    diff_id: Digest


@valueclass(frozen=False)
class ArchiveImage:
    config_raw: bytes
    config_digest: Digest
    config_media_type: str
    config: ImageConfig
    manifest_raw: bytes
    manifest_digest: Digest
    manifest_media_type: str
    layers: list[ArchiveLayer]
    tags: list[str] = field(default_factory=list)  # qualified


def verify(archive: ImageArchive) -> list[ArchiveImage]:
    """Every image the archive holds, checked; raises on the first thing that does not hold."""
    return Verifier(archive).images()


def _blob_name_digest(name: str) -> Digest | None:
    """The digest a ``blobs/<alg>/<hex>`` member claims by its name (it must then hash to it)."""
    match = _BLOB_PATH.fullmatch(member_name(name, what="path named in the archive"))
    if match is None:
        return None
    try:
        return Digest.parse(f"{match.group(1)}:{match.group(2)}")
    except InvalidDigest as exc:
        raise InvalidArchive(f"archive blob {name!r}: {exc}") from None


def _qualified_tag(text: object, where: str) -> str:
    if not isinstance(text, str):
        raise InvalidArchive(f"{where}: tags must be strings")
    try:
        ref = Reference.parse(text)
    except InvalidReference as exc:
        raise InvalidArchive(f"{where}: invalid tag {text[:120]!r} ({exc})") from None
    if ref.digest is not None or not ref.tag:
        raise InvalidArchive(f"{where}: {text[:120]!r} is not a NAME:TAG")
    return f"{ref.name}:{ref.tag}"


class Verifier:
    """Reads and checks the images of one archive; stores nothing."""

    def __init__(self, archive: ImageArchive) -> None:
        self.archive = archive
        self._layers: dict[str, ArchiveLayer] = {}  # by resolved member name

    def images(self) -> list[ArchiveImage]:
        if self.archive.has("manifest.json"):
            return self._docker()
        if self.archive.has("index.json"):
            return self._oci()
        raise InvalidArchive(
            f"{self.archive.label} is neither a docker-archive (no manifest.json) nor an oci-archive (no index.json)"
        )

    # docker-archive: manifest.json → Config, RepoTags, Layers (any paths)

    def _docker(self) -> list[ArchiveImage]:
        try:
            entries = json.loads(self.archive.read("manifest.json"))
        except (ValueError, RecursionError) as exc:
            raise InvalidArchive(f"manifest.json is not valid JSON: {str(exc)[:120]}") from None
        if not isinstance(entries, list) or not entries:
            raise InvalidArchive("manifest.json must be a non-empty list of images")
        if len(entries) > MAX_IMAGES:
            raise InvalidArchive(f"manifest.json lists more than {MAX_IMAGES} images")
        oci = self._oci_manifests() if self.archive.has("index.json") else []
        images = []
        for number, entry in enumerate(entries, 1):
            where = f"manifest.json entry {number}"
            if not isinstance(entry, dict):
                raise InvalidArchive(f"{where} must be an object")
            config_path, layer_paths, tags = entry.get("Config"), entry.get("Layers"), entry.get("RepoTags")
            if not isinstance(config_path, str):
                raise InvalidArchive(f"{where} has no Config path")
            if not isinstance(layer_paths, list) or not all(isinstance(p, str) for p in layer_paths):
                raise InvalidArchive(f"{where}: Layers must be a list of paths")
            if len(layer_paths) > MAX_LAYERS:
                raise InvalidArchive(f"{where} has more than {MAX_LAYERS} layers")
            if tags is not None and not isinstance(tags, list):
                raise InvalidArchive(f"{where}: RepoTags must be a list")
            config_raw = self.archive.read(config_path)
            config_digest = Digest.of(config_raw)
            claimed = _blob_name_digest(config_path)
            hex_name = _HEX_JSON.fullmatch(member_name(config_path))
            if claimed is None and hex_name is not None:
                claimed = Digest("sha256", hex_name.group(1))
            if claimed is not None and claimed != config_digest:
                raise DigestMismatch(f"digest mismatch for {config_path}: expected {claimed}, got {config_digest}")
            config = parse_config(config_raw)
            if len(config.diff_ids) != len(layer_paths):
                raise InvalidArchive(
                    f"{where}: the config lists {len(config.diff_ids)} diff_ids for {len(layer_paths)} layers"
                )
            layers = [
                self._layer(path, None, diff_id) for path, diff_id in zip(layer_paths, config.diff_ids, strict=True)
            ]
            image = self._with_manifest(config_raw, config_digest, config, layers, oci)
            image.tags = [_qualified_tag(tag, where) for tag in tags or ()]
            images.append(image)
        return images

    def _oci_manifests(self) -> list[tuple[bytes, Manifest]]:
        """The image manifests a Docker 25+ / sbx docker-archive also holds (to keep their exact bytes)."""
        found = []
        try:
            for raw, manifest, _ in self._oci_entries():
                found.append((raw, manifest))
        except SbxError:
            return []  # the OCI half is optional in a docker-archive; manifest.json alone is checked strictly
        return found

    def _with_manifest(
        self,
        config_raw: bytes,
        config_digest: Digest,
        config: ImageConfig,
        layers: list[ArchiveLayer],
        oci: list[tuple[bytes, Manifest]],
    ) -> ArchiveImage:
        for raw, manifest in oci:
            if manifest.config.digest == config_digest and [(d.digest, d.size) for d in manifest.layers] == [
                (layer.digest, layer.size) for layer in layers
            ] and all(
                mt.LAYER_COMPRESSION.get(d.media_type) == mt.LAYER_COMPRESSION[layer.media_type]
                for d, layer in zip(manifest.layers, layers, strict=True)
            ) and manifest.config.media_type in mt.CONFIGS:
                for d, layer in zip(manifest.layers, layers, strict=True):
                    layer.media_type = d.media_type
                return ArchiveImage(
                    config_raw, config_digest, manifest.config.media_type, config, raw, Digest.of(raw),
                    manifest.media_type, layers,
                )
        return _synthesise(config_raw, config_digest, config, layers)

    # oci-archive: oci-layout + index.json → manifests (or nested indexes) → config, layers

    def _oci(self) -> list[ArchiveImage]:
        try:
            layout = load_json(self.archive.read("oci-layout"), "oci-layout")
        except InvalidManifest as exc:
            raise InvalidArchive(f"not an OCI image layout: {exc}") from None
        if not isinstance(layout.get("imageLayoutVersion"), str):
            raise InvalidArchive("not an OCI image layout: oci-layout has no imageLayoutVersion")
        images: dict[Digest, ArchiveImage] = {}
        for raw, manifest, notes in self._oci_entries():
            if manifest.config.media_type not in mt.CONFIGS:
                raise InvalidArchive(f"unsupported config media type {manifest.config.media_type!r}")
            config_raw = self._blob(manifest.config.digest, manifest.config.size, MAX_MANIFEST_BYTES)
            config = parse_config(config_raw)
            if len(config.diff_ids) != len(manifest.layers):
                raise InvalidArchive(
                    f"image config lists {len(config.diff_ids)} diff_ids for {len(manifest.layers)} layers"
                )
            digest = Digest.of(raw)
            image = images.get(digest)
            if image is None:
                layers = [
                    self._layer(f"blobs/{d.digest.algorithm}/{d.digest.hex}", d, diff_id)
                    for d, diff_id in zip(manifest.layers, config.diff_ids, strict=True)
                ]
                image = images[digest] = ArchiveImage(
                    config_raw, manifest.config.digest, manifest.config.media_type, config, raw, digest,
                    manifest.media_type, layers,
                )
            name = _oci_name(notes)
            if name and name not in image.tags:
                image.tags.append(name)
        return list(images.values())

    def _oci_entries(self) -> Iterator[tuple[bytes, Manifest, dict[str, str]]]:
        """Every image manifest index.json names (through nested indexes, host platform), with its annotations."""
        index = parse_document(self.archive.read("index.json"))
        if not isinstance(index, Index):
            raise InvalidArchive("index.json is not an image index")
        if len(index.manifests) > MAX_IMAGES:
            raise InvalidArchive(f"index.json lists more than {MAX_IMAGES} images")
        for descriptor in index.manifests:
            raw = self._blob(descriptor.digest, descriptor.size, MAX_MANIFEST_BYTES)
            document = parse_document(raw, descriptor.media_type)
            if isinstance(document, Index):
                chosen = document.select(Platform.host())
                raw = self._blob(chosen.digest, chosen.size, MAX_MANIFEST_BYTES)
                document = parse_document(raw, chosen.media_type)
                if not isinstance(document, Manifest):
                    raise InvalidArchive(f"index entry {chosen.digest} is not an image manifest")
            yield raw, document, descriptor.annotations

    def _blob(self, digest: Digest, size: int, limit: int) -> bytes:
        path = f"blobs/{digest.algorithm}/{digest.hex}"
        if size > limit:
            raise InvalidArchive(f"blob {digest} is larger than {limit} bytes")
        data = self.archive.read(path, limit)
        if len(data) != size:
            raise SizeMismatch(f"size mismatch for {digest}: expected {size} bytes, got {len(data)}")
        actual = Digest.of(data, digest.algorithm)
        if actual != digest:
            raise DigestMismatch(f"digest mismatch: expected {digest}, got {actual}")
        return data

    def _layer(self, path: str, descriptor, diff_id: Digest) -> ArchiveLayer:
        """Hash one layer file (digest, size, uncompressed diff_id) and check it against what names it."""
        info = self.archive.resolve(path)
        key = info.name
        known = self._layers.get(key)
        if known is None:
            claimed = descriptor.digest if descriptor is not None else _blob_name_digest(path)
            hasher = hashlib.new(claimed.algorithm if claimed is not None else "sha256")
            diff: DiffIDHasher | None = None
            diff_error: InvalidLayer | None = None
            size = 0
            compression = mt.LAYER_COMPRESSION.get(descriptor.media_type) if descriptor is not None else None
            for chunk in self.archive.chunks(info):
                if diff is None:
                    compression = compression or sniff(chunk)
                    diff = DiffIDHasher(compression)
                hasher.update(chunk)
                size += len(chunk)
                if diff_error is None:
                    try:
                        diff.update(chunk)
                    except InvalidLayer as exc:
                        diff_error = exc
            if diff is None:
                compression = compression or "none"
                diff = DiffIDHasher(compression)
            digest = Digest(hasher.name, hasher.hexdigest())
            if descriptor is not None and size != descriptor.size:
                raise SizeMismatch(
                    f"size mismatch for {descriptor.digest}: expected {descriptor.size} bytes, got {size}"
                )
            if claimed is not None and digest != claimed:
                raise DigestMismatch(f"digest mismatch for {path}: expected {claimed}, got {digest}")
            if diff_error is not None:
                raise InvalidLayer(f"layer {path}: {diff_error}")
            try:
                uncompressed = diff.digest()
            except InvalidLayer as exc:
                raise InvalidLayer(f"layer {path}: {exc}") from None
            media_type = descriptor.media_type if descriptor is not None else _docker_layer_type(compression)
            known = self._layers[key] = ArchiveLayer(info, digest, size, media_type, uncompressed)
        if known.diff_id != diff_id:
            raise DiffIDMismatch(f"diff_id mismatch for layer {path}: config says {diff_id}, layer is {known.diff_id}")
        return ArchiveLayer(known.member, known.digest, known.size, known.media_type, known.diff_id)


def _docker_layer_type(compression: str) -> str:
    return {"gzip": mt.DOCKER_LAYER_GZIP, "zstd": DOCKER_LAYER_ZSTD, "none": DOCKER_LAYER_TAR}[compression]


def parse_config(raw: bytes) -> ImageConfig:
    try:
        return ImageConfig.parse(raw)
    except InvalidManifest as exc:
        raise InvalidArchive(f"invalid image config in the archive: {exc}") from None


def _oci_name(annotations: dict[str, str]) -> str | None:
    """The tag an index.json entry names: containerd's full name, else a ref.name that is a full reference."""
    for key in (CONTAINERD_NAME, REF_NAME):
        text = annotations.get(key)
        if not text:
            continue
        last = text.rsplit("/", 1)[-1]
        if key == REF_NAME and ":" not in last and "/" not in text:
            continue  # a bare tag ("latest") names no repository
        return _qualified_tag(text, f"index.json annotation {key}")
    return None


def _synthesise(
    config_raw: bytes, config_digest: Digest, config: ImageConfig, layers: list[ArchiveLayer]
) -> ArchiveImage:
    """An image manifest for a docker-archive image (which has none): v2s2, or OCI when a layer is zstd."""
    zstd = any(mt.LAYER_COMPRESSION[layer.media_type] == "zstd" for layer in layers)
    if zstd:
        types = {"gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD, "none": mt.OCI_LAYER}
        for layer in layers:
            layer.media_type = types[mt.LAYER_COMPRESSION[layer.media_type]]
        manifest_type, config_type = mt.OCI_MANIFEST, mt.OCI_CONFIG
    else:
        manifest_type, config_type = mt.DOCKER_MANIFEST, mt.DOCKER_CONFIG
    raw = manifest_bytes(manifest_type, config_type, config_digest, len(config_raw), layers)
    return ArchiveImage(config_raw, config_digest, config_type, config, raw, Digest.of(raw), manifest_type, layers)


_OCI_LAYER_TYPES = {
    mt.DOCKER_LAYER_GZIP: mt.OCI_LAYER_GZIP,
    DOCKER_LAYER_TAR: mt.OCI_LAYER,
    DOCKER_LAYER_ZSTD: mt.OCI_LAYER_ZSTD,
    mt.DOCKER_LAYER_FOREIGN: mt.OCI_LAYER_NONDIST_GZIP,
}


def as_oci_manifest(raw: bytes) -> bytes:
    """A Docker v2s2 manifest as an OCI image manifest: the same config and layer blobs, OCI media types."""
    document = json.loads(raw)
    document["mediaType"] = mt.OCI_MANIFEST
    document["config"]["mediaType"] = mt.OCI_CONFIG
    for layer in document["layers"]:
        layer["mediaType"] = _OCI_LAYER_TYPES.get(layer["mediaType"], layer["mediaType"])
    return json.dumps(document, indent=3).encode()


def manifest_bytes(manifest_type: str, config_type: str, config_digest: Digest, config_size: int, layers) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": str(config_digest), "size": config_size},
        "layers": [
            {"mediaType": layer.media_type, "digest": str(layer.digest), "size": layer.size} for layer in layers
        ],
    }
    return json.dumps(document, indent=3).encode()
