"""The image configuration (`application/vnd.oci.image.config.v1+json` / Docker's container config).

Only the fields sbx uses are modelled; :attr:`ImageConfig.raw` keeps the whole document for `image inspect`.
"""

from __future__ import annotations

from sandbox.errors import InvalidDigest, InvalidManifest
from sandbox.oci.digest import Digest
from sandbox.oci.manifest import load_json
from sandbox.valueclass import field, valueclass


@valueclass(slots=True)
class ImageConfig:
    os: str
    architecture: str
    variant: str | None
    created: str | None
    diff_ids: tuple[Digest, ...]
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    working_dir: str = ""
    user: str = ""
    stop_signal: str | None = None
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, raw: bytes) -> ImageConfig:
        data = load_json(raw, "image config")
        rootfs = data.get("rootfs")
        if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
            raise InvalidManifest("image config has no rootfs of type 'layers'")
        diff_ids = rootfs.get("diff_ids")
        if not isinstance(diff_ids, list):
            raise InvalidManifest("image config rootfs.diff_ids must be a list")
        try:
            parsed_ids = tuple(Digest.parse(d) for d in diff_ids)
        except InvalidDigest as exc:
            raise InvalidManifest(f"image config diff_ids: {exc}") from None
        config = data.get("config") or {}
        if not isinstance(config, dict):
            raise InvalidManifest("image config 'config' must be an object")
        return cls(
            os=_str(data, "os", "linux"),
            architecture=_str(data, "architecture", ""),
            variant=_str(data, "variant", "") or None,
            created=_str(data, "created", "") or None,
            diff_ids=parsed_ids,
            env=_strings(config, "Env") or (),
            entrypoint=_strings(config, "Entrypoint"),
            cmd=_strings(config, "Cmd"),
            working_dir=_str(config, "WorkingDir", ""),
            user=_str(config, "User", ""),
            stop_signal=_str(config, "StopSignal", "") or None,
            exposed_ports=tuple(sorted(_keys(config, "ExposedPorts"))),
            volumes=tuple(sorted(_keys(config, "Volumes"))),
            labels=_labels(config),
            raw=data,
        )


def _str(data: dict, key: str, default: str) -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidManifest(f"image config field {key!r} must be a string")
    return value


def _strings(data: dict, key: str) -> tuple[str, ...] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidManifest(f"image config field {key!r} must be a list of strings")
    return tuple(value)


def _keys(data: dict, key: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, dict):
        raise InvalidManifest(f"image config field {key!r} must be an object")
    return [str(k) for k in value]


def _labels(data: dict) -> dict[str, str]:
    value = data.get("Labels")
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidManifest("image config field 'Labels' must map strings to strings")
    return dict(value)
