"""The nginx image cache of tests/fixtures/debian_image.py: what counts as a usable cache, and the mirror it uses."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.fixtures import debian_image


def fake_cache(root: Path, version: int = debian_image.RECIPE_VERSION) -> Path:
    blobs = {name: hashlib.sha256(name.encode()).hexdigest() for name in ("config", "layer")}
    image = root / "nginx"
    (image / "blobs").mkdir(parents=True)
    for name, digest in blobs.items():
        (image / "blobs" / digest).write_text(name)
    manifest = {"config": {"digest": f"sha256:{blobs['config']}"}, "layers": [{"digest": f"sha256:{blobs['layer']}"}]}
    (image / "manifest.json").write_text(json.dumps(manifest))
    (image / "recipe.json").write_text(json.dumps({"version": version}))
    return root


def test_complete_cache_is_used(tmp_path: Path) -> None:
    image = debian_image.cached_image(fake_cache(tmp_path))
    assert image is not None and len(image.blob_digests) == 2


def test_missing_blob_or_old_recipe_means_rebuild(tmp_path: Path) -> None:
    root = fake_cache(tmp_path / "a")
    next((root / "nginx/blobs").iterdir()).unlink()
    assert debian_image.cached_image(root) is None
    assert debian_image.cached_image(fake_cache(tmp_path / "b", version=0)) is None
    assert debian_image.cached_image(tmp_path / "empty") is None


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("sources.list.d/debian.sources",
         "Types: deb\nURIs: http://mirror.lan/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
         "Types: deb\nURIs: http://mirror.lan/debian-security\nSuites: bookworm-security\n"),
        ("sources.list", "deb [arch=amd64] http://mirror.lan/debian bookworm main\n"
                         "deb http://mirror.lan/debian-security bookworm-security main\n"),
    ],
)
def test_mirror_comes_from_apt_sources(tmp_path: Path, monkeypatch, name: str, text: str) -> None:
    monkeypatch.delenv("SBX_DEMO_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / name).write_text(text)
    assert debian_image.debian_mirror(tmp_path) == "http://mirror.lan/debian"
