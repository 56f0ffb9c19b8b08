"""Image records: what the store knows about one image, and their strict JSON form.

One record per image, in ``images/<algorithm>/<hex>.json``, named by the image id (the config digest, as Docker
does). A record lists every blob the image needs, so garbage collection can tell which blobs are referenced.
Reading is strict: a truncated or hand-edited record is a :class:`StoreCorrupt` that names the file, never a
``KeyError`` or a half-filled record.
"""

from __future__ import annotations

import json
import math

from sandbox.errors import InvalidDigest, StoreCorrupt
from sandbox.oci.digest import Digest
from sandbox.store.fields import JsonFields
from sandbox.valueclass import field, valueclass

SCHEMA_VERSION = 1


@valueclass
class LayerRecord:
    digest: Digest  # of the compressed blob
    media_type: str
    size: int  # compressed bytes
    diff_id: Digest  # of the uncompressed tar stream, from the image config

    def to_json(self) -> dict:
        return {
            "digest": str(self.digest),
            "media_type": self.media_type,
            "size": self.size,
            "diff_id": str(self.diff_id),
        }

    @classmethod
    def from_json(cls, data: object, *, source: str = "image record") -> LayerRecord:
        fields = _Fields(data, source, "layer")
        return cls(
            digest=fields.digest("digest"),
            media_type=fields.string("media_type"),
            size=fields.count("size"),
            diff_id=fields.digest("diff_id"),
        )


@valueclass
class ImageRecord:
    id: Digest  # the config digest (Docker's image id)
    manifest_digest: Digest
    manifest_media_type: str
    config_media_type: str
    layers: tuple[LayerRecord, ...]
    repo_tags: tuple[str, ...]  # fully qualified: "docker.io/library/busybox:latest"
    repo_digests: tuple[str, ...]  # "docker.io/library/busybox@sha256:..."
    created: str | None  # from the image config (RFC 3339)
    added: float  # time.time() when stored
    platform: str  # "linux/amd64"
    size: int  # compressed layer bytes + config bytes
    index_digest: Digest | None = field(default=None)  # when pulled through a manifest list / index

    @property
    def dangling(self) -> bool:
        """No tag names this image (Docker shows it as <none>:<none>)."""
        return not self.repo_tags

    def blob_digests(self) -> tuple[Digest, ...]:
        """Every blob this image needs: config, manifest, index (if any), layers."""
        digests = [self.id, self.manifest_digest]
        if self.index_digest is not None:
            digests.append(self.index_digest)
        digests.extend(layer.digest for layer in self.layers)
        return tuple(digests)

    def to_json(self) -> dict:
        return {
            "schemaVersion": SCHEMA_VERSION,
            "id": str(self.id),
            "manifest_digest": str(self.manifest_digest),
            "manifest_media_type": self.manifest_media_type,
            "config_media_type": self.config_media_type,
            "layers": [layer.to_json() for layer in self.layers],
            "repo_tags": list(self.repo_tags),
            "repo_digests": list(self.repo_digests),
            "created": self.created,
            "added": self.added,
            "platform": self.platform,
            "size": self.size,
            "index_digest": str(self.index_digest) if self.index_digest is not None else None,
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: object, *, source: str = "image record") -> ImageRecord:
        fields = _Fields(data, source, "record")
        version = fields.raw("schemaVersion")
        if version != SCHEMA_VERSION or isinstance(version, bool):
            raise fields.damaged(f"unsupported schemaVersion {version!r}")
        layers = fields.raw("layers")
        if not isinstance(layers, list):
            raise fields.damaged("field 'layers' must be a list")
        index_digest = fields.raw("index_digest")
        added = fields.raw("added")
        try:
            if isinstance(added, bool) or not isinstance(added, int | float) or not math.isfinite(added):
                raise OverflowError
            added = float(added)
        except OverflowError:
            raise fields.damaged("field 'added' must be a finite number") from None
        return cls(
            id=fields.digest("id"),
            manifest_digest=fields.digest("manifest_digest"),
            manifest_media_type=fields.string("manifest_media_type"),
            config_media_type=fields.string("config_media_type"),
            layers=tuple(LayerRecord.from_json(layer, source=source) for layer in layers),
            repo_tags=fields.strings("repo_tags"),
            repo_digests=fields.strings("repo_digests"),
            created=fields.optional_string("created"),
            added=added,
            platform=fields.string("platform"),
            size=fields.count("size"),
            index_digest=None if index_digest is None else fields.digest("index_digest"),
        )

    @classmethod
    def from_bytes(cls, raw: bytes, *, source: str = "image record") -> ImageRecord:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise StoreCorrupt(f"damaged image record {source}: not valid JSON ({exc})", path=source) from None
        return cls.from_json(data, source=source)


class _Fields(JsonFields):
    """Image record fields; an image record may leave out its optional strings."""

    def damaged(self, reason: str) -> StoreCorrupt:
        return StoreCorrupt(f"damaged image record {self.source}: {reason}", path=self.source)

    def optional_string(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise self.damaged(f"field {key!r} must be a string or null")
        return value

    def count(self, key: str) -> int:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.damaged(f"field {key!r} must be a non-negative integer")
        return value

    def digest(self, key: str) -> Digest:
        value = self.raw(key)
        try:
            return Digest.parse(value)
        except InvalidDigest:
            raise self.damaged(f"field {key!r} is not a valid digest") from None
