"""Image archives: `save` (docker-archive / oci-archive), `load` (both, from Docker, skopeo or sbx) and `import`.

An archive is hostile input, checked as a pulled image is (TESTPLAN A and B):

- every member name is validated: no absolute names, no ``..`` component, no duplicate files; symbolic and hard
  links may only point at other members inside the archive (skopeo's legacy ``<id>/layer.tar`` links), and only
  regular files are ever read;
- JSON documents (``manifest.json``, ``index.json``, manifests, configs) are bounded to 4 MiB and parsed strictly;
- every blob is hashed: a ``blobs/sha256/<hex>`` file must hash to its name, an OCI blob to its descriptor (digest
  and size), and every layer's uncompressed stream to the config's diff_id (:class:`DiffIDHasher`);
- everything is verified before anything is stored; blobs then go through :meth:`Store.ingest` and the records
  through :meth:`Store.add_image` (so tags move as with pull). If storing fails, the blobs this load committed are
  discarded again.

`save` writes the layers as stored (usually gzip-compressed) under ``blobs/sha256/<hex>``, as Docker 25+ lays out
its archives: the docker-archive holds ``manifest.json`` plus a complete OCI layout (``oci-layout``,
``index.json``), the oci-archive only the OCI layout. Docker and skopeo decompress such layers when they load them.
The output file is written under a temporary name and renamed into place, so a failure leaves nothing behind.

`import` turns a rootfs tar (plain, gzip or zstd) into a one-layer image; its member names get the same checks.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import posixpath
import re
import shlex
import shutil
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO

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
    StoreCorrupt,
)
from sandbox.oci import mediatypes as mt
from sandbox.oci.digest import Digest
from sandbox.oci.imageconfig import ImageConfig
from sandbox.oci.layerdigest import DiffIDHasher
from sandbox.oci.manifest import MAX_LAYERS, MAX_MANIFEST_BYTES, Index, Manifest, Platform, load_json, parse_document
from sandbox.oci.reference import Reference
from sandbox.service.images import named_tag
from sandbox.store.tarheaders import BoundedTarInfo

if TYPE_CHECKING:
    from sandbox.service.images import ImageService
    from sandbox.store.images import ImageRecord
    from sandbox.store.store import Store

FORMATS = ("docker-archive", "oci-archive")
MAX_MEMBERS = 200_000
MAX_IMAGES = 1000
MAX_LINK_HOPS = 16
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"

_CHUNK = 1 << 20
_BLOB_PATH = re.compile(r"blobs/(sha256|sha512)/([0-9a-f]+)")
_HEX_JSON = re.compile(r"([0-9a-f]{64})\.json")
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


# -- member names ---------------------------------------------------------------------------------------------------


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
                while chunk := handle.read(_CHUNK):
                    yield chunk
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise InvalidArchive(f"{self.label} is a damaged tar archive ({str(exc)[:120]})") from None


# -- what a load verifies ---------------------------------------------------------------------------------------------


@dataclass
class _Layer:
    member: tarfile.TarInfo
    digest: Digest
    size: int
    media_type: str
    diff_id: Digest


@dataclass
class _Image:
    config_raw: bytes
    config_digest: Digest
    config_media_type: str
    config: ImageConfig
    manifest_raw: bytes
    manifest_digest: Digest
    manifest_media_type: str
    layers: list[_Layer]
    tags: list[str] = field(default_factory=list)  # qualified


@dataclass(frozen=True)
class Loaded:
    record: ImageRecord
    tags: tuple[str, ...]  # qualified tags this load gave the image

    @property
    def familiar_tags(self) -> tuple[str, ...]:
        return tuple(Reference.parse(tag).familiar for tag in self.tags)


def _compression(head: bytes) -> str:
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return "none"


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


class _Verifier:
    """Reads and checks the images of one archive; stores nothing."""

    def __init__(self, archive: ImageArchive) -> None:
        self.archive = archive
        self._layers: dict[str, _Layer] = {}  # by resolved member name

    def images(self) -> list[_Image]:
        if self.archive.has("manifest.json"):
            return self._docker()
        if self.archive.has("index.json"):
            return self._oci()
        raise InvalidArchive(
            f"{self.archive.label} is neither a docker-archive (no manifest.json) nor an oci-archive (no index.json)"
        )

    # docker-archive: manifest.json → Config, RepoTags, Layers (any paths)

    def _docker(self) -> list[_Image]:
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
            config = _parse_config(config_raw)
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
        layers: list[_Layer],
        oci: list[tuple[bytes, Manifest]],
    ) -> _Image:
        for raw, manifest in oci:
            if manifest.config.digest == config_digest and [(d.digest, d.size) for d in manifest.layers] == [
                (layer.digest, layer.size) for layer in layers
            ] and all(
                mt.LAYER_COMPRESSION.get(d.media_type) == mt.LAYER_COMPRESSION[layer.media_type]
                for d, layer in zip(manifest.layers, layers, strict=True)
            ) and manifest.config.media_type in mt.CONFIGS:
                for d, layer in zip(manifest.layers, layers, strict=True):
                    layer.media_type = d.media_type
                return _Image(
                    config_raw, config_digest, manifest.config.media_type, config, raw, Digest.of(raw),
                    manifest.media_type, layers,
                )
        return _synthesise(config_raw, config_digest, config, layers)

    # oci-archive: oci-layout + index.json → manifests (or nested indexes) → config, layers

    def _oci(self) -> list[_Image]:
        try:
            layout = load_json(self.archive.read("oci-layout"), "oci-layout")
        except InvalidManifest as exc:
            raise InvalidArchive(f"not an OCI image layout: {exc}") from None
        if not isinstance(layout.get("imageLayoutVersion"), str):
            raise InvalidArchive("not an OCI image layout: oci-layout has no imageLayoutVersion")
        images: dict[Digest, _Image] = {}
        for raw, manifest, notes in self._oci_entries():
            if manifest.config.media_type not in mt.CONFIGS:
                raise InvalidArchive(f"unsupported config media type {manifest.config.media_type!r}")
            config_raw = self._blob(manifest.config.digest, manifest.config.size, MAX_MANIFEST_BYTES)
            config = _parse_config(config_raw)
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
                image = images[digest] = _Image(
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

    def _layer(self, path: str, descriptor, diff_id: Digest) -> _Layer:
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
                    compression = compression or _compression(chunk)
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
            known = self._layers[key] = _Layer(info, digest, size, media_type, uncompressed)
        if known.diff_id != diff_id:
            raise DiffIDMismatch(f"diff_id mismatch for layer {path}: config says {diff_id}, layer is {known.diff_id}")
        return _Layer(known.member, known.digest, known.size, known.media_type, known.diff_id)


def _docker_layer_type(compression: str) -> str:
    return {"gzip": mt.DOCKER_LAYER_GZIP, "zstd": DOCKER_LAYER_ZSTD, "none": DOCKER_LAYER_TAR}[compression]


def _parse_config(raw: bytes) -> ImageConfig:
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


def _synthesise(config_raw: bytes, config_digest: Digest, config: ImageConfig, layers: list[_Layer]) -> _Image:
    """An image manifest for a docker-archive image (which has none): v2s2, or OCI when a layer is zstd."""
    zstd = any(mt.LAYER_COMPRESSION[layer.media_type] == "zstd" for layer in layers)
    if zstd:
        types = {"gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD, "none": mt.OCI_LAYER}
        for layer in layers:
            layer.media_type = types[mt.LAYER_COMPRESSION[layer.media_type]]
        manifest_type, config_type = mt.OCI_MANIFEST, mt.OCI_CONFIG
    else:
        manifest_type, config_type = mt.DOCKER_MANIFEST, mt.DOCKER_CONFIG
    raw = _manifest_bytes(manifest_type, config_type, config_digest, len(config_raw), layers)
    return _Image(config_raw, config_digest, config_type, config, raw, Digest.of(raw), manifest_type, layers)


_OCI_LAYER_TYPES = {
    mt.DOCKER_LAYER_GZIP: mt.OCI_LAYER_GZIP,
    DOCKER_LAYER_TAR: mt.OCI_LAYER,
    DOCKER_LAYER_ZSTD: mt.OCI_LAYER_ZSTD,
    mt.DOCKER_LAYER_FOREIGN: mt.OCI_LAYER_NONDIST_GZIP,
}


def _as_oci_manifest(raw: bytes) -> bytes:
    """A Docker v2s2 manifest as an OCI image manifest: the same config and layer blobs, OCI media types."""
    document = json.loads(raw)
    document["mediaType"] = mt.OCI_MANIFEST
    document["config"]["mediaType"] = mt.OCI_CONFIG
    for layer in document["layers"]:
        layer["mediaType"] = _OCI_LAYER_TYPES.get(layer["mediaType"], layer["mediaType"])
    return json.dumps(document, indent=3).encode()


def _manifest_bytes(manifest_type: str, config_type: str, config_digest: Digest, config_size: int, layers) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": str(config_digest), "size": config_size},
        "layers": [
            {"mediaType": layer.media_type, "digest": str(layer.digest), "size": layer.size} for layer in layers
        ],
    }
    return json.dumps(document, indent=3).encode()


# -- import: --change instructions -----------------------------------------------------------------------------------

CHANGE_INSTRUCTIONS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "USER", "WORKDIR", "STOPSIGNAL")


def _json_or_shell(argument: str, instruction: str) -> list[str]:
    text = argument.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
    if not text:
        raise InvalidArchive(f"invalid --change {instruction!r}: it needs an argument")
    return ["/bin/sh", "-c", text]


def _pairs(argument: str, instruction: str) -> list[tuple[str, str]]:
    """`k=v k2="v 2"` or the legacy `k v...` form (ENV only)."""
    try:
        words = shlex.split(argument)
    except ValueError as exc:
        raise InvalidArchive(f"invalid --change {instruction} {argument!r}: {exc}") from None
    if not words:
        raise InvalidArchive(f"invalid --change {instruction!r}: it needs an argument")
    if "=" not in words[0]:
        if instruction != "ENV":
            raise InvalidArchive(f"invalid --change {instruction} {argument!r}: use KEY=VALUE")
        key, _, value = argument.strip().partition(" ")
        if not value.strip():
            raise InvalidArchive(f"invalid --change ENV {argument!r}: use ENV KEY=VALUE or ENV KEY VALUE")
        return [(key, value.strip())]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidArchive(f"invalid --change {instruction} {argument!r}: use KEY=VALUE")
        pairs.append((key, value))
    return pairs


def apply_changes(config: dict, changes: Iterable[str]) -> dict:
    """Apply Dockerfile-style instructions (as `docker import --change`) to a container config (`Cmd`, `Env`...)."""
    for change in changes:
        instruction, _, argument = change.strip().partition(" ")
        instruction = instruction.upper()
        argument = argument.strip()
        if instruction not in CHANGE_INSTRUCTIONS:
            raise InvalidArchive(
                f"unsupported --change instruction {change.strip().split(' ', 1)[0][:40]!r}",
                hint=f"use one of {', '.join(CHANGE_INSTRUCTIONS)}",
            )
        if instruction == "CMD":
            config["Cmd"] = _json_or_shell(argument, instruction)
        elif instruction == "ENTRYPOINT":
            config["Entrypoint"] = _json_or_shell(argument, instruction)
        elif instruction == "ENV":
            env = list(config.get("Env") or [])
            for key, value in _pairs(argument, instruction):
                env = [item for item in env if item.split("=", 1)[0] != key]
                env.append(f"{key}={value}")
            config["Env"] = env
        elif instruction == "LABEL":
            labels = dict(config.get("Labels") or {})
            labels.update(_pairs(argument, instruction))
            config["Labels"] = labels
        elif instruction == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            if not argument:
                raise InvalidArchive("invalid --change 'EXPOSE': it needs a port")
            for item in argument.split():
                port, _, proto = item.partition("/")
                proto = (proto or "tcp").lower()
                if not port.isdigit() or not 0 < int(port) < 65536 or proto not in ("tcp", "udp", "sctp"):
                    raise InvalidArchive(f"invalid --change EXPOSE port {item!r}", hint="use PORT[/tcp|udp]")
                ports[f"{int(port)}/{proto}"] = {}
            config["ExposedPorts"] = ports
        else:  # USER, WORKDIR, STOPSIGNAL (checked when a container is created from the image, as Docker's is)
            if not argument:
                raise InvalidArchive(f"invalid --change {instruction!r}: it needs an argument")
            if instruction == "STOPSIGNAL":
                config["StopSignal"] = argument
            elif instruction == "USER":
                config["User"] = argument
            else:
                previous = config.get("WorkingDir") or "/"
                config["WorkingDir"] = posixpath.normpath(posixpath.join(previous, argument))
    return config


# -- import: the rootfs stream ---------------------------------------------------------------------------------------


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
        data = self._source.read(size if size is not None and size >= 0 else _CHUNK)
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
        while self.read(_CHUNK):
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


def _decompressed(handle: BinaryIO, compression: str) -> IO[bytes]:
    if compression == "gzip":
        return gzip.GzipFile(fileobj=handle, mode="rb")
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True)
    return handle


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# -- the service -----------------------------------------------------------------------------------------------------


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
                    manifest_raw, manifest_type = _as_oci_manifest(manifest_raw), mt.OCI_MANIFEST
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
                shutil.copyfileobj(source, handle, _CHUNK)
            with ImageArchive(spooled, label=label or "stdin") as archive:
                return self._load(archive)

    def _load(self, archive: ImageArchive) -> list[Loaded]:
        images = _Verifier(archive).images()
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

    def _ingest_member(self, archive: ImageArchive, layer: _Layer, committed: list[Digest]) -> None:
        with self.store.ingest(layer.digest, layer.size) as writer:
            if writer is None:
                return
            for chunk in archive.chunks(layer.member):
                writer.write(chunk)
            writer.commit()  # checks size and digest again: the bytes are those that were verified
            committed.append(layer.digest)

    def _put(self, image: _Image, committed: list[Digest]) -> None:
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

    def _record(self, image: _Image, tags: Iterable[str]) -> ImageRecord:
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
                    shutil.copyfileobj(source, handle, _CHUNK)
            blob_path, digest, size, diff_id = self._rootfs_layer(path, Path(tmp), label)
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
            image = _Image(
                config_raw, Digest.of(config_raw), mt.DOCKER_CONFIG, _parse_config(config_raw), b"", Digest.of(b""),
                mt.DOCKER_MANIFEST, [_Layer(None, digest, size, mt.DOCKER_LAYER_GZIP, diff_id)],  # type: ignore[arg-type]
            )
            image.manifest_raw = _manifest_bytes(
                mt.DOCKER_MANIFEST, mt.DOCKER_CONFIG, image.config_digest, len(config_raw), image.layers
            )
            image.manifest_digest = Digest.of(image.manifest_raw)
            store = self.store
            committed: list[Digest] = []
            try:
                with store.ingest(digest, size) as writer:
                    if writer is not None:
                        with open(blob_path, "rb") as blob:
                            while chunk := blob.read(_CHUNK):
                                writer.write(chunk)
                        writer.commit()
                        committed.append(digest)
                self._put(image, committed)
                return self._add_unpacked(self._record(image, (tag,) if tag else ()))
            except BaseException:
                if committed:
                    store.discard_unreferenced(committed)
                raise

    def _rootfs_layer(self, path: Path, tmp: Path, label: str) -> tuple[Path, Digest, int, Digest]:
        """Check the rootfs tar's members and hash it; returns (gzip blob path, its digest, size, diff_id)."""
        with open(path, "rb") as handle:
            compression = _compression(handle.read(4))
            handle.seek(0)
            out = None if compression == "gzip" else open(tmp / "layer.tar.gz", "wb")  # noqa: SIM115
            try:
                tee = _Tee(_decompressed(handle, compression), out)
                count = 0
                with tarfile.open(fileobj=tee, mode="r|", tarinfo=BoundedTarInfo) as tar:  # type: ignore[call-overload]
                    for info in tar:
                        count += 1
                        if count > MAX_MEMBERS * 10:
                            raise InvalidArchive(f"rootfs archive {label} has too many members")
                        check_rootfs_member(info)
                tee.drain()
            except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
                raise InvalidArchive(
                    f"{label} is not a valid rootfs tar archive (plain, gzip or zstd): {str(exc)[:120]}"
                ) from None
            except Exception as exc:
                if type(exc).__name__ == "ZstdError":
                    raise InvalidArchive(f"{label} is not valid zstd: {str(exc)[:120]}") from None
                raise
            finally:
                if out is not None:
                    out.close()
        diff_id = Digest("sha256", tee.diff.hexdigest())
        if compression == "gzip":
            hasher, size = hashlib.sha256(), 0
            with open(path, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    hasher.update(chunk)
                    size += len(chunk)
            return path, Digest("sha256", hasher.hexdigest()), size, diff_id
        return tmp / "layer.tar.gz", Digest("sha256", tee.blob.hexdigest()), tee.blob_size, diff_id


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = len(self._data)
        chunk, self._data = self._data[:size], self._data[size:]
        return bytes(chunk)

