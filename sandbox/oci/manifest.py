"""Manifests and indexes: strict parsing of hostile JSON, and platform choice.

The raw bytes are what was hashed; :func:`parse_document` parses those same bytes, so what is verified is what is
used (TESTPLAN 16). A document must be exactly one kind: a manifest has ``config`` and ``layers`` and no
``manifests``; an index has ``manifests`` and neither of the others (TESTPLAN 18, the "ambiguous document" attack).
Its ``mediaType`` field, when present, must agree with the Content-Type the registry sent. Every field is type
checked so that ``layers: null`` or a digest that is a number is an :class:`InvalidManifest`, never a traceback.
"""

from __future__ import annotations

import json
import reprlib

from sandbox.errors import InvalidDigest, InvalidManifest, PlatformNotFound
from sandbox.oci import mediatypes as mt
from sandbox.oci.digest import Digest
from sandbox.valueclass import field, valueclass

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_LAYERS = 1000


@valueclass(slots=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidManifest(
                f"invalid platform {text!r}", hint="use os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8"
            )
        os_name, arch = parts[0].lower(), parts[1].lower()
        variant = parts[2].lower() if len(parts) == 3 else None
        arch, default_variant = _normalise_arch(arch)
        return cls(os_name, arch, variant or default_variant)

    @classmethod
    def host(cls) -> Platform:
        import platform as host_platform  # here: only a pull without --platform asks (~1 ms of every run)

        arch, variant = _normalise_arch(host_platform.machine().lower())
        return cls("linux", arch, variant)

    def matches(self, other: Platform) -> bool:
        """Does a candidate from an index (other) serve this wanted platform?"""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        if self.variant is None or other.variant is None:
            return True
        return self.variant == other.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _normalise_arch(arch: str) -> tuple[str, str | None]:
    aliases = {
        "x86_64": ("amd64", None),
        "x86-64": ("amd64", None),
        "amd64": ("amd64", None),
        "aarch64": ("arm64", None),
        "arm64": ("arm64", None),
        "arm": ("arm", "v7"),  # as containerd's platforms.Normalize: plain arm means arm/v7
        "armv7l": ("arm", "v7"),
        "armhf": ("arm", "v7"),
        "armv6l": ("arm", "v6"),
        "i386": ("386", None),
        "i686": ("386", None),
    }
    return aliases.get(arch, (arch, None))


@valueclass(slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        data: dict = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.platform:
            data["platform"] = {"os": self.platform.os, "architecture": self.platform.architecture}
            if self.platform.variant:
                data["platform"]["variant"] = self.platform.variant
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        return data


@valueclass(slots=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@valueclass(slots=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]

    def select(self, wanted: Platform) -> Descriptor:
        for descriptor in self.manifests:
            if descriptor.media_type not in mt.IMAGE_MANIFESTS or descriptor.platform is None:
                continue
            if wanted.matches(descriptor.platform):
                return descriptor
        available = ", ".join(str(d.platform) for d in self.manifests if d.platform) or "none"
        raise PlatformNotFound(
            f"no image for platform {wanted} in the manifest list (available: {available})",
            hint="choose one with --platform os/arch[/variant]",
        )


def load_json(raw: bytes, what: str) -> dict:
    """Parse a bounded JSON object; every failure becomes InvalidManifest."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise InvalidManifest(f"{what} is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidManifest(f"{what} is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(data, dict):
        raise InvalidManifest(f"{what} is not a JSON object")
    return data


def parse_document(raw: bytes, content_type: str | None = None) -> Manifest | Index:
    """Parse a manifest or index from the exact bytes that were (or will be) hashed."""
    data = load_json(raw, "manifest")
    declared = data.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise InvalidManifest("manifest mediaType is not a string")
    content_type = _bare_content_type(content_type)
    if declared and content_type and content_type in mt.ALL_MANIFESTS and declared != content_type:
        raise InvalidManifest(f"manifest mediaType {declared!r} disagrees with Content-Type {content_type!r}")
    if data.get("schemaVersion") != 2:
        raise InvalidManifest(
            f"unsupported manifest schemaVersion {reprlib.repr(data.get('schemaVersion'))}",
            hint="only Docker v2 schema 2 and OCI images are supported",
        )
    has_manifests = "manifests" in data
    has_image_parts = "layers" in data or "config" in data
    if has_manifests and has_image_parts:
        raise InvalidManifest("ambiguous manifest: it has both 'manifests' and 'layers'/'config'")
    media_type = declared or (content_type if content_type in mt.ALL_MANIFESTS else None)
    if has_manifests:
        media_type = media_type or mt.OCI_INDEX
        if media_type not in mt.INDEXES:
            raise InvalidManifest(f"document of type {media_type!r} has 'manifests'")
        entries = _list(data, "manifests", "manifest list")
        return Index(media_type, tuple(_descriptor(e, "manifest list entry", True) for e in entries))
    media_type = media_type or mt.OCI_MANIFEST
    if media_type not in mt.IMAGE_MANIFESTS:
        if media_type in mt.INDEXES:
            raise InvalidManifest(f"{media_type} has no 'manifests'")
        raise InvalidManifest(f"unsupported manifest media type {media_type!r}")
    config = _descriptor(data.get("config"), "manifest config descriptor", False)
    layers = _list(data, "layers", "manifest")
    if len(layers) > MAX_LAYERS:
        raise InvalidManifest(f"manifest has {len(layers)} layers (more than {MAX_LAYERS})")
    parsed_layers = tuple(_descriptor(layer, "manifest layer descriptor", False) for layer in layers)
    for layer in parsed_layers:
        if layer.media_type not in mt.LAYER_COMPRESSION:
            raise InvalidManifest(f"unsupported layer media type {layer.media_type!r}")
    return Manifest(media_type, config, parsed_layers)


def _bare_content_type(value: str | None) -> str | None:
    if not value:
        return None
    return value.split(";", 1)[0].strip().lower() or None


def _list(data: dict, key: str, what: str) -> list:
    value = data.get(key)
    if not isinstance(value, list):
        raise InvalidManifest(f"{what} '{key}' must be a list, not {type(value).__name__}")
    return value


def _descriptor(value: object, what: str, with_platform: bool) -> Descriptor:
    if not isinstance(value, dict):
        raise InvalidManifest(f"{what} must be an object")
    media_type = value.get("mediaType")
    size = value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise InvalidManifest(f"{what} has no mediaType")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidManifest(f"{what} has an invalid size {reprlib.repr(size)}")
    try:
        digest = Digest.parse(value.get("digest"))
    except InvalidDigest as exc:
        raise InvalidManifest(f"{what}: {exc}") from None
    platform = None
    if with_platform and "platform" in value:
        raw = value["platform"]
        if not isinstance(raw, dict):
            raise InvalidManifest(f"{what} platform must be an object")
        os_name, arch, variant = raw.get("os"), raw.get("architecture"), raw.get("variant")
        if not isinstance(os_name, str) or not isinstance(arch, str):
            raise InvalidManifest(f"{what} platform needs os and architecture strings")
        if variant is not None and not isinstance(variant, str):
            raise InvalidManifest(f"{what} platform variant must be a string")
        platform = Platform(os_name, arch, variant or None)
    annotations = value.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise InvalidManifest(f"{what} annotations must map strings to strings")
    return Descriptor(media_type, digest, size, platform, annotations)
